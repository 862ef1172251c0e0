//! From XML (roxmltree) to the typed model, with libvirt's checks and vnet's.
//!
//! Every check that can point at an element does so: errors carry the element's line.
//! Checks that relate elements to each other (a DHCP host inside its `<ip>`'s subnet, a
//! MAC used twice) are made while parsing, so they point at the offending element too.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use roxmltree::{Document, Node};

use crate::model::{
    classful_prefix, Bandwidth, BandwidthRate, Bootp, Bridge, Dhcp, DhcpHost, DhcpRange, Dns,
    DnsForwarder, DnsHost, DnsSrv, DnsTxt, Domain, Forward, ForwardMode, IpDef, IpFamily, Lease,
    LeaseUnit, MacAddr, MacTableManager, Nat, NativeMode, PortGroup, RawAttribute, RawElement,
    RawNode, Route, VirtualPort, Vlan, VlanTag,
};
use crate::port_forward::{self, ForwardProto, PortForward};
use crate::{limits, Error, Network, VNET_NS};

/// The namespace of libvirt's dnsmasq options.
pub(crate) const DNSMASQ_NS: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";
/// The `xml:` namespace, which is never declared.
pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

pub(crate) type Result<T> = std::result::Result<T, Error>;

mod dns;
mod forward;
mod ip;
mod vnet;

use dns::dns;
pub(crate) use dns::{dns_host, dns_srv, dns_txt};
use forward::forward;
pub(crate) use forward::forward_interface;
pub(crate) use ip::{check_range_overlap, dhcp_host, dhcp_range, DhcpSeen};
use ip::{family_attr, ip, netmask_or_prefix};
use vnet::*;

/// Parses XML text, turning roxmltree's error into ours (with its line). Every XML
/// the crate reads comes through here: the text is first checked against
/// [`crate::MAX_XML_BYTES`] and [`crate::MAX_XML_DEPTH`] ([`limits::check`]), since
/// roxmltree recurses once per nesting level.
pub(crate) fn document(xml: &str) -> Result<Document<'_>> {
    limits::check(xml)?;
    Document::parse(xml).map_err(|e| {
        let mut err = Error::new("", format!("malformed XML: {e}"));
        err.line = Some(e.pos().row);
        err
    })
}

// ---------------------------------------------------------------------------------------
// Node helpers

/// The 1-based line of a node.
fn line(node: Node<'_, '_>) -> u32 {
    node.document().text_pos_at(node.range().start).row
}

/// The element's name as written (`prefix:local` for prefixed elements).
fn qname(node: Node<'_, '_>) -> String {
    let local = node.tag_name().name();
    match node
        .tag_name()
        .namespace()
        .and_then(|ns| node.lookup_prefix(ns))
    {
        Some(p) if !p.is_empty() => format!("{p}:{local}"),
        _ => local.to_owned(),
    }
}

/// An error about an element.
pub(crate) fn err(node: Node<'_, '_>, reason: impl Into<String>) -> Error {
    let mut e = Error::new(&qname(node), reason);
    e.line = Some(line(node));
    e
}

/// An error about an attribute (its value, if present, is shown).
pub(crate) fn err_attr(node: Node<'_, '_>, attr: &str, reason: impl Into<String>) -> Error {
    let mut e = err(node, reason);
    e.attribute = Some(attr.to_owned());
    e.value = node.attribute(attr).map(Box::from);
    e
}

/// Whether the element is in no namespace (libvirt's own elements).
fn is_plain(node: Node<'_, '_>) -> bool {
    node.tag_name().namespace().is_none()
}

/// Element children.
fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

/// Rejects attributes other than `allowed` (libvirt's schema rejects them too).
pub(crate) fn check_attrs(node: Node<'_, '_>, allowed: &[&str]) -> Result<()> {
    check_attrs_because(node, allowed, || {
        "libvirt's schema does not allow it".to_owned()
    })
}

/// Rejects attributes in vnet's namespace (it defines none), in any other namespace,
/// and unnamespaced ones other than `allowed`; `why` says why, after the attribute.
fn check_attrs_because(
    node: Node<'_, '_>,
    allowed: &[&str],
    why: impl Fn() -> String,
) -> Result<()> {
    for a in node.attributes() {
        if a.namespace() == Some(VNET_NS) {
            return Err(vnet_attr_err(node, a));
        }
        if a.namespace().is_some() || !allowed.contains(&a.name()) {
            let mut e = err(
                node,
                format!(
                    "unknown attribute '{}' on <{}> ({})",
                    a.name(),
                    qname(node),
                    why()
                ),
            );
            e.attribute = Some(a.name().to_owned());
            e.value = Some(a.value().into());
            return Err(e);
        }
    }
    Ok(())
}

/// Rejects child elements other than `allowed` and non-blank text.
pub(crate) fn check_children(node: Node<'_, '_>, allowed: &[&str]) -> Result<()> {
    check_children_vnet(node, allowed, &[])
}

/// [`check_children`], also allowing the vnet elements named in `vnet` (which the
/// caller checks itself).
fn check_children_vnet(node: Node<'_, '_>, allowed: &[&str], vnet: &[&str]) -> Result<()> {
    for child in node.children() {
        if child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(err(
                node,
                format!("unexpected text inside <{}>", qname(node)),
            ));
        }
        if !child.is_element() {
            continue;
        }
        if child.tag_name().namespace() == Some(VNET_NS) {
            if vnet.contains(&child.tag_name().name()) {
                continue;
            }
            return Err(err(
                child,
                format!(
                    "<{}> belongs directly under <network>, not inside <{}>",
                    qname(child),
                    qname(node)
                ),
            ));
        }
        if !is_plain(child) {
            return Err(err(
                child,
                format!(
                    "foreign-namespace element <{}> is not allowed inside <{}> \
                     (vnet keeps foreign elements only directly under <network>)",
                    qname(child),
                    qname(node)
                ),
            ));
        }
        if !allowed.contains(&child.tag_name().name()) {
            return Err(err(
                child,
                format!(
                    "unknown element <{}> inside <{}> (libvirt's schema does not allow it)",
                    qname(child),
                    qname(node)
                ),
            ));
        }
    }
    Ok(())
}

/// The only child element named `name`, if any; an error if there are several.
fn single<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Result<Option<Node<'a, 'i>>> {
    let mut found = None;
    for child in elements(node).filter(|c| is_plain(*c) && c.tag_name().name() == name) {
        if found.is_some() {
            return Err(err(
                child,
                format!("only one <{name}> is allowed inside <{}>", qname(node)),
            ));
        }
        found = Some(child);
    }
    Ok(found)
}

/// A required attribute.
fn required<'a>(node: Node<'a, '_>, attr: &str, why: &str) -> Result<&'a str> {
    node.attribute(attr)
        .ok_or_else(|| err_attr(node, attr, format!("missing attribute '{attr}' ({why})")))
}

/// An optional `yes`/`no` attribute.
fn yes_no(node: Node<'_, '_>, attr: &str) -> Result<Option<bool>> {
    match node.attribute(attr) {
        None => Ok(None),
        Some("yes") => Ok(Some(true)),
        Some("no") => Ok(Some(false)),
        Some(_) => Err(err_attr(node, attr, "expected 'yes' or 'no'")),
    }
}

/// An optional number attribute.
fn number<T: FromStr>(node: Node<'_, '_>, attr: &str, what: &str) -> Result<Option<T>> {
    match node.attribute(attr) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| err_attr(node, attr, format!("expected {what}"))),
    }
}

/// An optional IP address attribute.
fn ip_attr(node: Node<'_, '_>, attr: &str) -> Result<Option<IpAddr>> {
    match node.attribute(attr) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| err_attr(node, attr, "not a valid IPv4 or IPv6 address")),
    }
}

/// A required IP address attribute.
fn ip_required(node: Node<'_, '_>, attr: &str, why: &str) -> Result<IpAddr> {
    required(node, attr, why)?;
    ip_attr(node, attr)?.ok_or_else(|| err_attr(node, attr, "missing"))
}

/// An optional IPv4 netmask attribute; it must be contiguous and not empty.
fn netmask_attr(node: Node<'_, '_>, attr: &str) -> Result<Option<Ipv4Addr>> {
    let Some(v) = node.attribute(attr) else {
        return Ok(None);
    };
    let m: Ipv4Addr = match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(m)) => m,
        Ok(IpAddr::V6(_)) => {
            return Err(err_attr(
                node,
                attr,
                "a netmask is an IPv4 dotted quad; use prefix for IPv6",
            ))
        }
        Err(_) => return Err(err_attr(node, attr, "not a valid netmask")),
    };
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 || bits == 0 {
        return Err(err_attr(
            node,
            attr,
            "netmask is not contiguous (expected 1s followed by 0s, like 255.255.255.0)",
        ));
    }
    Ok(Some(m))
}

/// Text content of an element that holds only text.
fn text_of(node: Node<'_, '_>) -> Result<String> {
    if let Some(child) = elements(node).next() {
        return Err(err(
            child,
            format!("<{}> holds only text, not elements", qname(node)),
        ));
    }
    Ok(node.children().filter_map(|c| c.text()).collect())
}

/// Kernel rules for an interface name (`dev_valid_name`), plus `%d` templates.
fn check_ifname(node: Node<'_, '_>, attr: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 {
        return Err(err_attr(node, attr, "an interface name is 1 to 15 bytes"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(err_attr(
            node,
            attr,
            "an interface name cannot be '.' or '..' or contain '/', ':' or whitespace",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Names

/// vnet's network-name rule (also enforced by `vnet-control`): 1–64 characters of
/// `[A-Za-z0-9_.-]`, not starting with `.` or `-`. libvirt itself only forbids `/`.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the network name is empty");
    }
    if name.contains('/') {
        return Some("a network name cannot contain '/' (libvirt forbids it)");
    }
    if name.chars().count() > 64 {
        return Some("a network name is at most 64 characters");
    }
    if name.starts_with(['.', '-']) {
        return Some("a network name cannot start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Some("a network name may hold only letters, digits, '_', '.' and '-'");
    }
    None
}

// ---------------------------------------------------------------------------------------
// The network

/// Which top-level elements were seen, for duplicate detection.
#[derive(Default)]
struct Slots<'a, 'i> {
    name: Option<Node<'a, 'i>>,
    uuid: Option<Node<'a, 'i>>,
    title: Option<Node<'a, 'i>>,
    description: Option<Node<'a, 'i>>,
    metadata: Option<Node<'a, 'i>>,
    forward: Option<Node<'a, 'i>>,
    bridge: Option<Node<'a, 'i>>,
    mtu: Option<Node<'a, 'i>>,
    mac: Option<Node<'a, 'i>>,
    domain: Option<Node<'a, 'i>>,
    dns: Option<Node<'a, 'i>>,
    vlan: Option<Node<'a, 'i>>,
    bandwidth: Option<Node<'a, 'i>>,
    port: Option<Node<'a, 'i>>,
    virtualport: Option<Node<'a, 'i>>,
    dnsmasq: Option<Node<'a, 'i>>,
    host_access: Option<Node<'a, 'i>>,
    host_port: Option<Node<'a, 'i>>,
    port_security: Option<Node<'a, 'i>>,
    port_forwards: Vec<Node<'a, 'i>>,
    ips: Vec<Node<'a, 'i>>,
    routes: Vec<Node<'a, 'i>>,
    portgroups: Vec<Node<'a, 'i>>,
    extensions: Vec<Node<'a, 'i>>,
}

fn put<'a, 'i>(slot: &mut Option<Node<'a, 'i>>, node: Node<'a, 'i>) -> Result<()> {
    if slot.is_some() {
        return Err(err(
            node,
            format!("<{}> may appear only once in <network>", qname(node)),
        ));
    }
    *slot = Some(node);
    Ok(())
}

/// Parses and checks a whole `<network>` document.
pub(crate) fn network(xml: &str) -> Result<Network> {
    let doc = document(xml)?;
    let root = doc.root_element();
    if !is_plain(root) || root.tag_name().name() != "network" {
        return Err(err(
            root,
            format!("the root element must be <network>, not <{}>", qname(root)),
        ));
    }
    // `connections` is live status that `virsh net-dumpxml` prints; it is ignored.
    check_attrs(root, &["ipv6", "trustGuestRxFilters", "connections"])?;

    let mut s = Slots::default();
    for child in root.children() {
        if child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(err(root, "unexpected text inside <network>"));
        }
        if !child.is_element() {
            continue;
        }
        match child.tag_name().namespace() {
            Some(DNSMASQ_NS) => {
                if child.tag_name().name() != "options" {
                    return Err(err(
                        child,
                        format!(
                            "unknown element <{}> in the dnsmasq namespace (expected <dnsmasq:options>)",
                            qname(child)
                        ),
                    ));
                }
                put(&mut s.dnsmasq, child)?;
            }
            Some(VNET_NS) => match child.tag_name().name() {
                "port-forward" => s.port_forwards.push(child),
                "host-access" => put(&mut s.host_access, child)?,
                "host-port" => put(&mut s.host_port, child)?,
                "port-security" => put(&mut s.port_security, child)?,
                _ => {
                    return Err(err(
                        child,
                        format!(
                            "unknown element <{}> in vnet's namespace (expected \
                             <vnet:port-forward>, <vnet:host-access>, <vnet:host-port> or \
                             <vnet:port-security>)",
                            qname(child)
                        ),
                    ))
                }
            },
            Some(_) => {
                no_vnet_inside(child)?;
                s.extensions.push(child);
            }
            None => match child.tag_name().name() {
                "name" => put(&mut s.name, child)?,
                "uuid" => put(&mut s.uuid, child)?,
                "title" => put(&mut s.title, child)?,
                "description" => put(&mut s.description, child)?,
                "metadata" => put(&mut s.metadata, child)?,
                "forward" => put(&mut s.forward, child)?,
                "bridge" => put(&mut s.bridge, child)?,
                "mtu" => put(&mut s.mtu, child)?,
                "mac" => put(&mut s.mac, child)?,
                "domain" => put(&mut s.domain, child)?,
                "dns" => put(&mut s.dns, child)?,
                "vlan" => put(&mut s.vlan, child)?,
                "bandwidth" => put(&mut s.bandwidth, child)?,
                "port" => put(&mut s.port, child)?,
                "virtualport" => put(&mut s.virtualport, child)?,
                "ip" => s.ips.push(child),
                "route" => s.routes.push(child),
                "portgroup" => s.portgroups.push(child),
                other => {
                    return Err(err(
                        child,
                        format!(
                            "unknown element <{other}> in <network> (libvirt's schema does not allow it)"
                        ),
                    ))
                }
            },
        }
    }

    // The name first: every later message is about this network.
    let Some(name_node) = s.name else {
        return Err(err(
            root,
            "missing <name> element (every network needs a name)",
        ));
    };
    let name = text_of(name_node)?;
    if let Some(problem) = name_problem(&name) {
        return Err(err(
            name_node,
            format!("invalid network name '{name}': {problem}"),
        ));
    }

    // The forward mode next: a mode vnet cannot serve is the most useful message.
    let forward = match s.forward {
        Some(node) => forward(node)?,
        None => Forward::default(),
    };
    let mode = forward.mode;
    let nat_ipv6 =
        mode == ForwardMode::Nat && forward.nat.as_ref().and_then(|n| n.ipv6) == Some(true);

    let uuid = s.uuid.map(uuid).transpose()?;
    let title = match s.title {
        Some(node) => {
            let t = text_of(node)?;
            if t.contains('\n') {
                return Err(err(node, "a network title cannot contain newlines"));
            }
            Some(t)
        }
        None => None,
    };
    let description = s.description.map(text_of).transpose()?;
    let metadata = s.metadata.map(metadata).transpose()?;

    let mut bridge = Bridge::default();
    if let Some(node) = s.bridge {
        bridge = self::bridge(node)?;
        if !mode.has_own_bridge() {
            let given = ["stp", "delay", "zone"]
                .into_iter()
                .find(|a| node.attribute(*a).is_some());
            if let Some(attr) = given {
                return Err(err_attr(
                    node,
                    attr,
                    format!(
                        "bridge delay/stp/zone options are only allowed in route, nat, open and \
                         isolated mode, not in mode '{mode}'"
                    ),
                ));
            }
        }
        if mode == ForwardMode::Bridge && bridge.name.is_some() && !forward.interfaces.is_empty() {
            return Err(err_attr(
                node,
                "name",
                "a network with forward mode='bridge' can name a bridge or a forward dev, not both",
            ));
        }
    }
    if mode.has_own_bridge() {
        // libvirt's parser: stp defaults to on, delay to 0.
        bridge.stp.get_or_insert(true);
        bridge.delay.get_or_insert(0);
    }

    let mtu = match s.mtu {
        Some(node) => {
            check_attrs(node, &["size"])?;
            check_children(node, &[])?;
            required(node, "size", "the MTU in bytes")?;
            let size: u32 = number(node, "size", "a number of bytes")?.unwrap_or_default();
            if !(68..=65535).contains(&size) {
                return Err(err_attr(
                    node,
                    "size",
                    "the MTU must be between 68 and 65535",
                ));
            }
            if !mode.has_own_bridge() {
                return Err(err(
                    node,
                    format!(
                        "mtu size is only allowed in open, route, nat and isolated mode, not in \
                         mode '{mode}'"
                    ),
                ));
            }
            Some(size)
        }
        None => None,
    };

    let mac = match s.mac {
        Some(node) => {
            check_attrs(node, &["address"])?;
            check_children(node, &[])?;
            let text = required(node, "address", "the bridge's MAC address")?;
            let mac = parse_mac(node, "address", text)?;
            Some(mac.to_string())
        }
        None => None,
    };

    let domain = s.domain.map(domain).transpose()?;
    let dns = match s.dns {
        Some(node) => dns(node)?,
        None => Dns::default(),
    };
    let vlan = s.vlan.map(vlan).transpose()?;
    let bandwidth = s.bandwidth.map(bandwidth).transpose()?.flatten();
    let port_isolated = match s.port {
        Some(node) => {
            check_attrs(node, &["isolated"])?;
            check_children(node, &[])?;
            yes_no(node, "isolated")?
        }
        None => None,
    };

    let mut seen = DhcpSeen::default();
    let mut ips = Vec::with_capacity(s.ips.len());
    for node in &s.ips {
        ips.push(ip(*node, &mut seen)?);
    }

    let mut routes = Vec::with_capacity(s.routes.len());
    for node in &s.routes {
        routes.push(route(*node, &ips)?);
    }

    let virtualport = match s.virtualport {
        Some(node) => {
            let vp = virtualport(node)?;
            if vp.kind.is_none() {
                return Err(err_attr(
                    node,
                    "type",
                    "a network's <virtualport> needs a type",
                ));
            }
            Some(vp)
        }
        None => None,
    };

    let mut portgroups: Vec<PortGroup> = Vec::with_capacity(s.portgroups.len());
    for node in &s.portgroups {
        let pg = portgroup(*node)?;
        check_portgroup_unique(*node, &pg, &portgroups, None)?;
        portgroups.push(pg);
    }

    let dnsmasq_options = s
        .dnsmasq
        .map(dnsmasq_options)
        .transpose()?
        .unwrap_or_default();
    let extensions = s.extensions.iter().map(|n| raw(*n)).collect();

    // vnet's own elements last: they are checked against the mode and the <ip>s.
    let mut port_forwards: Vec<PortForward> = Vec::with_capacity(s.port_forwards.len());
    for node in &s.port_forwards {
        let f = vnet_port_forward(*node)?;
        if let Some(p) = port_forward::network_problem(&f, mode, nat_ipv6, &ips, &port_forwards) {
            return Err(match p.attr {
                Some(attr) => err_attr(*node, attr, p.reason),
                None => err(*node, p.reason),
            });
        }
        port_forwards.push(f);
    }
    let host_access = s.host_access.map(vnet_host_access).transpose()?;
    let host_port = s.host_port.map(vnet_host_access).transpose()?;
    let port_security = s.port_security.map(vnet_host_access).transpose()?;
    if let Some(node) = s.host_port {
        if matches!(mode, ForwardMode::Bridge) {
            return Err(err(
                node,
                "<vnet:host-port> needs a network with a gateway (not mode 'bridge')",
            ));
        }
    }
    if let (Some(node), Some(reason)) = (
        s.host_access,
        port_forward::mode_problem(mode, "<vnet:host-access> is"),
    ) {
        return Err(err(node, reason));
    }

    // Checks that tie the forward mode to the rest (libvirt's parser makes them too).
    if matches!(
        mode,
        ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open
    ) {
        let node = s.forward.unwrap_or(root);
        if ips.is_empty() {
            return Err(err(
                node,
                format!("{mode} forwarding requested, but the network has no <ip> address"),
            ));
        }
        if forward.interfaces.len() > 1 {
            return Err(err(
                node,
                format!(
                    "multiple forwarding interfaces given for mode '{mode}'; only one is supported"
                ),
            ));
        }
    }

    let mut net = Network {
        name,
        uuid,
        title,
        description,
        metadata,
        ipv6_no_gateway: yes_no(root, "ipv6")?.unwrap_or(false),
        trust_guest_rx_filters: yes_no(root, "trustGuestRxFilters")?,
        forward,
        bridge,
        mtu,
        mac,
        domain,
        dns,
        vlan,
        bandwidth,
        port_isolated,
        ips,
        routes,
        virtualport,
        portgroups,
        dnsmasq_options,
        port_forwards,
        host_access,
        host_port,
        port_security,
        extensions,
        warnings: Vec::new(),
    };
    net.refresh_warnings();
    Ok(net)
}

fn uuid(node: Node<'_, '_>) -> Result<String> {
    check_attrs(node, &[])?;
    let text = text_of(node)?;
    uuid::Uuid::try_parse(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|e| err(node, format!("malformed uuid '{}': {e}", text.trim())))
}

pub(crate) fn parse_mac(node: Node<'_, '_>, attr: &str, text: &str) -> Result<MacAddr> {
    let mac: MacAddr = text
        .parse()
        .map_err(|e| err_attr(node, attr, format!("not a MAC address: {e}")))?;
    if mac.is_multicast() {
        return Err(err_attr(
            node,
            attr,
            "expected a unicast MAC address, found a multicast one (the first byte is odd)",
        ));
    }
    Ok(mac)
}

fn metadata(node: Node<'_, '_>) -> Result<Vec<RawNode>> {
    check_attrs(node, &[])?;
    let mut out = Vec::new();
    for child in node.children() {
        if child.is_element() {
            if is_plain(child) {
                return Err(err(
                    child,
                    format!(
                        "<metadata> children must be in their own XML namespace, \
                         <{}> has none",
                        qname(child)
                    ),
                ));
            }
            no_vnet_inside(child)?;
            out.push(RawNode::Element(raw(child)));
        } else if child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(err(node, "unexpected text inside <metadata>"));
        }
    }
    Ok(out)
}

/// The prefix of a qualified name as written (`None` without one).
fn prefix_in(qname: &str) -> Option<String> {
    qname
        .split_once(':')
        .map(|(p, _)| p.to_owned())
        .filter(|p| !p.is_empty())
}

/// The element's prefix as written in the source: the same namespace may be bound to
/// several prefixes, so the prefix cannot be looked up from the namespace.
fn element_prefix(node: Node<'_, '_>) -> Option<String> {
    let text = node.document().input_text();
    let tag = text.get(node.range().start + 1..)?;
    let end = tag
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    prefix_in(&tag[..end])
}

/// Copies an element verbatim.
pub(crate) fn raw(node: Node<'_, '_>) -> RawElement {
    let text = node.document().input_text();
    let namespace = node.tag_name().namespace().map(str::to_owned);
    let prefix = namespace.as_ref().and_then(|_| element_prefix(node));
    let attributes = node
        .attributes()
        .map(|a| RawAttribute {
            namespace: a.namespace().map(str::to_owned),
            prefix: a
                .namespace()
                .and_then(|_| text.get(a.range_qname()))
                .and_then(prefix_in),
            name: a.name().to_owned(),
            value: a.value().to_owned(),
        })
        .collect();
    let has_elements = elements(node).next().is_some();
    let mut children = Vec::new();
    // A comment or processing instruction splits the text around it into two nodes;
    // the text is one piece of content, so the pieces are joined again.
    let mut text = String::new();
    let flush = |text: &mut String, children: &mut Vec<RawNode>| {
        // Between child elements, surrounding whitespace is layout, not content.
        let t = if has_elements {
            text.trim()
        } else {
            text.as_str()
        };
        if !t.is_empty() {
            children.push(RawNode::Text(t.to_owned()));
        }
        text.clear();
    };
    for c in node.children() {
        if c.is_element() {
            flush(&mut text, &mut children);
            children.push(RawNode::Element(raw(c)));
        } else if c.is_text() {
            text.push_str(c.text().unwrap_or_default());
        }
    }
    flush(&mut text, &mut children);
    RawElement {
        namespace,
        prefix,
        name: node.tag_name().name().to_owned(),
        attributes,
        children,
    }
}

fn dnsmasq_options(node: Node<'_, '_>) -> Result<Vec<String>> {
    check_attrs(node, &[])?;
    let mut out = Vec::new();
    for child in node.children() {
        if child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(err(node, "unexpected text inside <dnsmasq:options>"));
        }
        if !child.is_element() {
            continue;
        }
        if child.tag_name().namespace() != Some(DNSMASQ_NS) || child.tag_name().name() != "option" {
            return Err(err(
                child,
                format!("unknown element <{}> in <dnsmasq:options>", qname(child)),
            ));
        }
        check_attrs(child, &["value"])?;
        check_children(child, &[])?;
        out.push(required(child, "value", "the dnsmasq option line")?.to_owned());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// <bridge>, <domain>

fn bridge(node: Node<'_, '_>) -> Result<Bridge> {
    check_attrs(node, &["name", "stp", "delay", "macTableManager", "zone"])?;
    check_children(node, &[])?;
    let name = node.attribute("name").map(str::to_owned);
    if let Some(n) = &name {
        check_ifname(node, "name", n)?;
    }
    let stp = match node.attribute("stp") {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(_) => return Err(err_attr(node, "stp", "expected 'on' or 'off'")),
    };
    let delay = number(node, "delay", "a number of seconds")?;
    let mac_table_manager = match node.attribute("macTableManager") {
        None => None,
        Some("kernel") => Some(MacTableManager::Kernel),
        Some("libvirt") => Some(MacTableManager::Libvirt),
        Some(_) => {
            return Err(err_attr(
                node,
                "macTableManager",
                "expected 'kernel' or 'libvirt'",
            ))
        }
    };
    let zone = node.attribute("zone").map(str::to_owned);
    Ok(Bridge {
        name,
        stp,
        delay,
        mac_table_manager,
        zone,
    })
}

fn domain(node: Node<'_, '_>) -> Result<Domain> {
    check_attrs(node, &["name", "localOnly", "register"])?;
    check_children(node, &[])?;
    let name = required(node, "name", "the DNS domain")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(err_attr(node, "name", "not a valid domain name"));
    }
    Ok(Domain {
        name: name.to_owned(),
        local_only: yes_no(node, "localOnly")?,
        register: yes_no(node, "register")?,
    })
}

// ---------------------------------------------------------------------------------------
// <route>

fn route(node: Node<'_, '_>, ips: &[IpDef]) -> Result<Route> {
    check_attrs(
        node,
        &[
            "family", "address", "netmask", "prefix", "gateway", "metric",
        ],
    )?;
    check_children(node, &[])?;
    let family = family_attr(node)?;
    let address = ip_required(node, "address", "the destination network")?;
    let gateway = ip_required(node, "gateway", "the next hop")?;
    let actual = IpFamily::of(address);
    if family.unwrap_or(IpFamily::V4) != actual {
        return Err(err_attr(
            node,
            "address",
            "the address does not match the route's family",
        ));
    }
    if IpFamily::of(gateway) != actual {
        return Err(err_attr(
            node,
            "gateway",
            "the gateway is not in the route's family",
        ));
    }
    let (netmask, prefix) = netmask_or_prefix(node, actual, 0)?;
    let metric: Option<u32> = number(node, "metric", "a positive number")?;
    if metric == Some(0) {
        return Err(err_attr(node, "metric", "a route metric must be positive"));
    }
    if !ips.iter().any(|ip| ip.contains(gateway)) {
        return Err(err_attr(
            node,
            "gateway",
            "unreachable static route gateway: it is in none of the network's <ip> subnets",
        ));
    }
    Ok(Route {
        family,
        address,
        netmask,
        prefix,
        gateway,
        metric,
    })
}

// ---------------------------------------------------------------------------------------
// <portgroup>, <vlan>, <bandwidth>, <virtualport>

pub(crate) fn portgroup(node: Node<'_, '_>) -> Result<PortGroup> {
    check_attrs(node, &["name", "default", "trustGuestRxFilters"])?;
    check_children_vnet(
        node,
        &["vlan", "virtualport", "bandwidth"],
        &["port-security"],
    )?;
    let mut port_security = None;
    for child in elements(node).filter(|c| c.tag_name().namespace() == Some(VNET_NS)) {
        if port_security.is_some() {
            return Err(err(
                child,
                format!("<{}> appears more than once", qname(child)),
            ));
        }
        port_security = Some(vnet_host_access(child)?);
    }
    let name = required(node, "name", "a portgroup needs a name")?;
    if name.is_empty() {
        return Err(err_attr(node, "name", "a portgroup name cannot be empty"));
    }
    Ok(PortGroup {
        name: name.to_owned(),
        default: yes_no(node, "default")?.unwrap_or(false),
        trust_guest_rx_filters: yes_no(node, "trustGuestRxFilters")?,
        vlan: single(node, "vlan")?.map(vlan).transpose()?,
        virtualport: single(node, "virtualport")?.map(virtualport).transpose()?,
        bandwidth: single(node, "bandwidth")?
            .map(bandwidth)
            .transpose()?
            .flatten(),
        port_security,
    })
}

/// Portgroup names are unique and at most one is the default (`replacing`: the index
/// of the portgroup this one replaces).
pub(crate) fn check_portgroup_unique(
    node: Node<'_, '_>,
    pg: &PortGroup,
    others: &[PortGroup],
    replacing: Option<usize>,
) -> Result<()> {
    for (i, other) in others.iter().enumerate() {
        if Some(i) == replacing {
            continue;
        }
        if other.name == pg.name {
            return Err(err_attr(
                node,
                "name",
                "a portgroup with this name already exists",
            ));
        }
        if pg.default && other.default {
            return Err(err_attr(
                node,
                "default",
                format!(
                    "portgroup '{}' is already the default; only one default is allowed",
                    other.name
                ),
            ));
        }
    }
    Ok(())
}

fn vlan(node: Node<'_, '_>) -> Result<Vlan> {
    check_attrs(node, &["trunk"])?;
    check_children(node, &["tag"])?;
    let trunk_attr = yes_no(node, "trunk")?;
    let mut tags = Vec::new();
    for t in elements(node) {
        check_attrs(t, &["id", "nativeMode"])?;
        check_children(t, &[])?;
        required(t, "id", "the VLAN id")?;
        let id: u16 = number(t, "id", "a VLAN id (0-4095)")?.unwrap_or_default();
        if id > 4095 {
            return Err(err_attr(t, "id", "a VLAN id is 0 to 4095"));
        }
        let native_mode = match t.attribute("nativeMode") {
            None => None,
            Some("tagged") => Some(NativeMode::Tagged),
            Some("untagged") => Some(NativeMode::Untagged),
            Some(_) => return Err(err_attr(t, "nativeMode", "expected 'tagged' or 'untagged'")),
        };
        if native_mode.is_some() && tags.iter().any(|x: &VlanTag| x.native_mode.is_some()) {
            return Err(err_attr(
                t,
                "nativeMode",
                "only one tag can be the native VLAN",
            ));
        }
        tags.push(VlanTag { id, native_mode });
    }
    if tags.is_empty() {
        return Err(err(node, "a <vlan> needs at least one <tag id='…'/>"));
    }
    if tags.len() > 1 && trunk_attr == Some(false) {
        return Err(err_attr(
            node,
            "trunk",
            "more than one VLAN tag requires trunk='yes'",
        ));
    }
    Ok(Vlan {
        trunk: trunk_attr == Some(true) || tags.len() > 1,
        tags,
    })
}

fn bandwidth(node: Node<'_, '_>) -> Result<Option<Bandwidth>> {
    check_attrs(node, &[])?;
    check_children(node, &["inbound", "outbound"])?;
    let rate = |name: &str| -> Result<Option<BandwidthRate>> {
        let Some(r) = single(node, name)? else {
            return Ok(None);
        };
        if r.attribute("floor").is_some() {
            return Err(err_attr(
                r,
                "floor",
                "floor is only valid on a guest interface, not on a network or portgroup",
            ));
        }
        check_attrs(r, &["average", "peak", "burst"])?;
        check_children(r, &[])?;
        required(r, "average", "the average rate in KiB/s")?;
        Ok(Some(BandwidthRate {
            average: number(r, "average", "a rate in KiB/s")?.unwrap_or_default(),
            peak: number(r, "peak", "a rate in KiB/s")?,
            burst: number(r, "burst", "a size in KiB")?,
        }))
    };
    let bw = Bandwidth {
        inbound: rate("inbound")?,
        outbound: rate("outbound")?,
    };
    Ok((bw.inbound.is_some() || bw.outbound.is_some()).then_some(bw))
}

fn virtualport(node: Node<'_, '_>) -> Result<VirtualPort> {
    check_attrs(node, &["type"])?;
    check_children(node, &["parameters"])?;
    let kind = node.attribute("type").map(str::to_owned);
    if let Some(k) = &kind {
        if !["openvswitch", "802.1Qbg", "802.1Qbh", "midonet"].contains(&k.as_str()) {
            return Err(err_attr(
                node,
                "type",
                "expected 'openvswitch', '802.1Qbg', '802.1Qbh' or 'midonet'",
            ));
        }
    }
    let parameters = match single(node, "parameters")? {
        Some(p) => {
            check_attrs(
                p,
                &[
                    "managerid",
                    "typeid",
                    "typeidversion",
                    "instanceid",
                    "interfaceid",
                    "profileid",
                ],
            )?;
            check_children(p, &[])?;
            Some(
                p.attributes()
                    .map(|a| (a.name().to_owned(), a.value().to_owned()))
                    .collect(),
            )
        }
        None => None,
    };
    Ok(VirtualPort { kind, parameters })
}
