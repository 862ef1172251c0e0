//! The model back to XML, formatted as libvirt formats it (`virNetworkDefFormatBuf`):
//! its element order, single quotes, two-space indentation.

use std::fmt::Write as _;

use crate::model::{
    Bandwidth, BandwidthRate, IpDef, Lease, PortGroup, RawElement, RawNode, VirtualPort, Vlan,
};
use crate::parse::{DNSMASQ_NS, XML_NS};
use crate::{Network, VNET_NS};

/// Escapes text (`& < > ' "`, and a carriage return, which a parser would turn into a
/// line feed).
pub(crate) fn escape(s: &str) -> String {
    escape_with(s, false)
}

/// Escapes an attribute value: as text, and tabs and line breaks too (a parser turns
/// them into spaces in attribute values).
fn escape_attr(s: &str) -> String {
    escape_with(s, true)
}

fn escape_with(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#xD;"),
            '\n' if attr => out.push_str("&#xA;"),
            '\t' if attr => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
    out
}

/// An indenting line writer.
struct Out {
    buf: String,
    depth: usize,
}

impl Out {
    fn line(&mut self, s: &str) {
        for _ in 0..self.depth {
            self.buf.push_str("  ");
        }
        self.buf.push_str(s);
        self.buf.push('\n');
    }
}

/// Builds `<name a='v' …` (without the closing `>`).
struct Tag(String);

impl Tag {
    fn new(name: &str) -> Self {
        Self(format!("<{name}"))
    }

    fn attr(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.0, " {name}='{}'", escape_attr(&value.to_string()));
        self
    }

    fn opt(self, name: &str, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    fn yes_no(self, name: &str, value: Option<bool>) -> Self {
        self.opt(name, value.map(|b| if b { "yes" } else { "no" }))
    }

    fn empty(self) -> String {
        self.0 + "/>"
    }

    fn open(self) -> String {
        self.0 + ">"
    }
}

pub(crate) fn network(net: &Network) -> String {
    let mut o = Out {
        buf: String::new(),
        depth: 0,
    };
    let mut root = Tag::new("network");
    if !net.dnsmasq_options.is_empty() {
        root = root.attr("xmlns:dnsmasq", DNSMASQ_NS);
    }
    let has_vnet = !net.port_forwards.is_empty()
        || net.host_access.is_some()
        || net.host_port.is_some()
        || net.port_security.is_some()
        || net.portgroups.iter().any(|pg| pg.port_security.is_some());
    if has_vnet {
        root = root.attr("xmlns:vnet", VNET_NS);
    }
    if net.ipv6_no_gateway {
        root = root.attr("ipv6", "yes");
    }
    root = root.yes_no("trustGuestRxFilters", net.trust_guest_rx_filters);
    o.line(&root.open());
    o.depth += 1;

    o.line(&format!("<name>{}</name>", escape(&net.name)));
    if let Some(u) = &net.uuid {
        o.line(&format!("<uuid>{}</uuid>", escape(u)));
    }
    if let Some(t) = &net.title {
        o.line(&format!("<title>{}</title>", escape(t)));
    }
    if let Some(d) = &net.description {
        o.line(&format!("<description>{}</description>", escape(d)));
    }
    if let Some(children) = &net.metadata {
        if children.is_empty() {
            o.line("<metadata/>");
        } else {
            o.line("<metadata>");
            o.depth += 1;
            for child in children {
                raw_node(&mut o, child, &mut Vec::new());
            }
            o.depth -= 1;
            o.line("</metadata>");
        }
    }

    let fwd = &net.forward;
    let mode = fwd.mode;
    if mode != crate::ForwardMode::None {
        let tag = Tag::new("forward")
            .opt("dev", fwd.dev())
            .attr("mode", mode.as_str());
        if fwd.interfaces.is_empty() && fwd.nat.is_none() {
            o.line(&tag.empty());
        } else {
            o.line(&tag.open());
            o.depth += 1;
            if let Some(nat) = &fwd.nat {
                let tag = Tag::new("nat").yes_no("ipv6", nat.ipv6);
                if nat.addresses.is_none() && nat.ports.is_none() {
                    o.line(&tag.empty());
                } else {
                    o.line(&tag.open());
                    o.depth += 1;
                    if let Some((start, end)) = nat.addresses {
                        o.line(
                            &Tag::new("address")
                                .attr("start", start)
                                .attr("end", end)
                                .empty(),
                        );
                    }
                    if let Some((start, end)) = nat.ports {
                        o.line(
                            &Tag::new("port")
                                .attr("start", start)
                                .attr("end", end)
                                .empty(),
                        );
                    }
                    o.depth -= 1;
                    o.line("</nat>");
                }
            }
            for dev in &fwd.interfaces {
                o.line(&Tag::new("interface").attr("dev", dev).empty());
            }
            o.depth -= 1;
            o.line("</forward>");
        }
    }

    let b = &net.bridge;
    if mode.has_own_bridge() || b.name.is_some() || b.mac_table_manager.is_some() {
        let mut tag = Tag::new("bridge")
            .opt("name", b.name.as_ref())
            .opt("zone", b.zone.as_ref());
        if mode.has_own_bridge() {
            tag = tag
                .opt("stp", b.stp.map(|s| if s { "on" } else { "off" }))
                .opt("delay", b.delay);
        }
        tag = tag.opt("macTableManager", b.mac_table_manager.map(|m| m.as_str()));
        o.line(&tag.empty());
    }
    if let Some(mtu) = net.mtu {
        o.line(&Tag::new("mtu").attr("size", mtu).empty());
    }
    if let Some(mac) = &net.mac {
        o.line(&Tag::new("mac").attr("address", mac).empty());
    }
    if let Some(d) = &net.domain {
        o.line(
            &Tag::new("domain")
                .attr("name", &d.name)
                .yes_no("localOnly", d.local_only)
                .yes_no("register", d.register)
                .empty(),
        );
    }
    dns(&mut o, net);
    if let Some(v) = &net.vlan {
        vlan(&mut o, v);
    }
    if let Some(bw) = &net.bandwidth {
        bandwidth(&mut o, bw);
    }
    if let Some(iso) = net.port_isolated {
        o.line(&Tag::new("port").yes_no("isolated", Some(iso)).empty());
    }
    for ip in &net.ips {
        ip_def(&mut o, ip);
    }
    for r in &net.routes {
        o.line(
            &Tag::new("route")
                .opt("family", r.family.map(|f| f.as_str()))
                .attr("address", r.address)
                .opt("netmask", r.netmask)
                .opt("prefix", r.prefix)
                .attr("gateway", r.gateway)
                .opt("metric", r.metric)
                .empty(),
        );
    }
    if let Some(vp) = &net.virtualport {
        virtualport(&mut o, vp);
    }
    for pg in &net.portgroups {
        portgroup(&mut o, pg);
    }
    if !net.dnsmasq_options.is_empty() {
        o.line("<dnsmasq:options>");
        o.depth += 1;
        for opt in &net.dnsmasq_options {
            o.line(&Tag::new("dnsmasq:option").attr("value", opt).empty());
        }
        o.depth -= 1;
        o.line("</dnsmasq:options>");
    }
    // vnet's own elements after libvirt's (dnsmasq:options included), before the kept
    // foreign ones.
    for f in &net.port_forwards {
        o.line(
            &Tag::new("vnet:port-forward")
                .attr("proto", f.proto)
                .opt("address", f.address)
                .attr("port", f.port)
                .opt("end", f.end)
                .attr("to", f.to)
                .opt("to-port", f.to_port)
                .empty(),
        );
    }
    if net.host_access.is_some() {
        o.line(
            &Tag::new("vnet:host-access")
                .yes_no("enabled", net.host_access)
                .empty(),
        );
    }
    if net.host_port.is_some() {
        o.line(
            &Tag::new("vnet:host-port")
                .yes_no("enabled", net.host_port)
                .empty(),
        );
    }
    if net.port_security.is_some() {
        o.line(
            &Tag::new("vnet:port-security")
                .yes_no("enabled", net.port_security)
                .empty(),
        );
    }
    for ext in &net.extensions {
        // The root declares only the dnsmasq and vnet prefixes.
        let mut scope = Vec::new();
        if !net.dnsmasq_options.is_empty() {
            scope.push((Some("dnsmasq".to_owned()), DNSMASQ_NS.to_owned()));
        }
        if has_vnet {
            scope.push((Some("vnet".to_owned()), VNET_NS.to_owned()));
        }
        raw_element(&mut o, ext, &mut scope);
    }
    o.depth -= 1;
    o.line("</network>");
    o.buf
}

fn dns(o: &mut Out, net: &Network) {
    let d = &net.dns;
    if d.is_empty() {
        return;
    }
    let tag = Tag::new("dns")
        .yes_no("enable", d.enable)
        .yes_no("forwardPlainNames", d.forward_plain_names);
    if d.forwarders.is_empty() && d.txts.is_empty() && d.srvs.is_empty() && d.hosts.is_empty() {
        o.line(&tag.empty());
        return;
    }
    o.line(&tag.open());
    o.depth += 1;
    for f in &d.forwarders {
        o.line(
            &Tag::new("forwarder")
                .opt("domain", f.domain.as_ref())
                .opt("addr", f.addr)
                .opt("port", f.port)
                .empty(),
        );
    }
    for t in &d.txts {
        o.line(
            &Tag::new("txt")
                .attr("name", &t.name)
                .attr("value", &t.value)
                .empty(),
        );
    }
    for s in &d.srvs {
        o.line(
            &Tag::new("srv")
                .attr("service", &s.service)
                .attr("protocol", &s.protocol)
                .opt("domain", s.domain.as_ref())
                .opt("target", s.target.as_ref())
                .opt("port", s.port)
                .opt("priority", s.priority)
                .opt("weight", s.weight)
                .empty(),
        );
    }
    for h in &d.hosts {
        o.line(&Tag::new("host").attr("ip", h.ip).open());
        o.depth += 1;
        for name in &h.hostnames {
            o.line(&format!("<hostname>{}</hostname>", escape(name)));
        }
        o.depth -= 1;
        o.line("</host>");
    }
    o.depth -= 1;
    o.line("</dns>");
}

fn lease_child(o: &mut Out, tag: Tag, name: &str, lease: Option<Lease>) {
    let Some(l) = lease else {
        o.line(&tag.empty());
        return;
    };
    o.line(&tag.open());
    o.depth += 1;
    if l.expiry == 0 {
        o.line("<lease expiry='0'/>");
    } else {
        o.line(
            &Tag::new("lease")
                .attr("expiry", l.expiry)
                .attr("unit", l.unit.as_str())
                .empty(),
        );
    }
    o.depth -= 1;
    o.line(&format!("</{name}>"));
}

fn ip_def(o: &mut Out, ip: &IpDef) {
    // libvirt always writes <ip> with an end tag, even when empty.
    o.line(
        &Tag::new("ip")
            .opt("family", ip.family.map(|f| f.as_str()))
            .attr("address", ip.address)
            .opt("netmask", ip.netmask)
            .opt("prefix", ip.prefix)
            .yes_no("localPtr", ip.local_ptr)
            .open(),
    );
    o.depth += 1;
    if let Some(root) = &ip.tftp_root {
        o.line(&Tag::new("tftp").attr("root", root).empty());
    }
    if let Some(dhcp) = &ip.dhcp {
        o.line("<dhcp>");
        o.depth += 1;
        for r in &dhcp.ranges {
            let tag = Tag::new("range").attr("start", r.start).attr("end", r.end);
            lease_child(o, tag, "range", r.lease);
        }
        for h in &dhcp.hosts {
            let tag = Tag::new("host")
                .opt("mac", h.mac)
                .opt("id", h.id.as_ref())
                .opt("name", h.name.as_ref())
                .attr("ip", h.ip);
            lease_child(o, tag, "host", h.lease);
        }
        if let Some(b) = &dhcp.bootp {
            o.line(
                &Tag::new("bootp")
                    .attr("file", &b.file)
                    .opt("server", b.server)
                    .empty(),
            );
        }
        o.depth -= 1;
        o.line("</dhcp>");
    }
    o.depth -= 1;
    o.line("</ip>");
}

fn vlan(o: &mut Out, v: &Vlan) {
    o.line(
        &Tag::new("vlan")
            .opt("trunk", v.trunk.then_some("yes"))
            .open(),
    );
    o.depth += 1;
    for t in &v.tags {
        o.line(
            &Tag::new("tag")
                .attr("id", t.id)
                .opt("nativeMode", t.native_mode.map(|m| m.as_str()))
                .empty(),
        );
    }
    o.depth -= 1;
    o.line("</vlan>");
}

fn bandwidth(o: &mut Out, bw: &Bandwidth) {
    o.line("<bandwidth>");
    o.depth += 1;
    let rate = |o: &mut Out, name: &str, r: &BandwidthRate| {
        o.line(
            &Tag::new(name)
                .attr("average", r.average)
                .opt("peak", r.peak)
                .opt("burst", r.burst)
                .empty(),
        );
    };
    if let Some(r) = &bw.inbound {
        rate(o, "inbound", r);
    }
    if let Some(r) = &bw.outbound {
        rate(o, "outbound", r);
    }
    o.depth -= 1;
    o.line("</bandwidth>");
}

fn virtualport(o: &mut Out, vp: &VirtualPort) {
    let tag = Tag::new("virtualport").opt("type", vp.kind.as_ref());
    let Some(params) = &vp.parameters else {
        o.line(&tag.empty());
        return;
    };
    o.line(&tag.open());
    o.depth += 1;
    let mut p = Tag::new("parameters");
    for (k, v) in params {
        p = p.attr(k, v);
    }
    o.line(&p.empty());
    o.depth -= 1;
    o.line("</virtualport>");
}

fn portgroup(o: &mut Out, pg: &PortGroup) {
    let tag = Tag::new("portgroup")
        .attr("name", &pg.name)
        .opt("default", pg.default.then_some("yes"))
        .yes_no("trustGuestRxFilters", pg.trust_guest_rx_filters);
    if pg.vlan.is_none()
        && pg.virtualport.is_none()
        && pg.bandwidth.is_none()
        && pg.port_security.is_none()
    {
        o.line(&tag.empty());
        return;
    }
    o.line(&tag.open());
    o.depth += 1;
    if let Some(v) = &pg.vlan {
        vlan(o, v);
    }
    if let Some(vp) = &pg.virtualport {
        virtualport(o, vp);
    }
    if let Some(bw) = &pg.bandwidth {
        bandwidth(o, bw);
    }
    if pg.port_security.is_some() {
        o.line(
            &Tag::new("vnet:port-security")
                .yes_no("enabled", pg.port_security)
                .empty(),
        );
    }
    o.depth -= 1;
    o.line("</portgroup>");
}

/// The namespace declarations in scope: (prefix, URI); prefix `None` is the default.
type Scope = Vec<(Option<String>, String)>;

fn in_scope(scope: &Scope, prefix: &Option<String>) -> Option<String> {
    scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.clone())
}

fn raw_node(o: &mut Out, node: &RawNode, scope: &mut Scope) {
    match node {
        RawNode::Element(e) => raw_element(o, e, scope),
        RawNode::Text(t) => o.line(&escape(t.trim())),
    }
}

/// Writes a kept element, declaring the namespaces it needs that are not in scope.
fn raw_element(o: &mut Out, e: &RawElement, scope: &mut Scope) {
    let depth_before = scope.len();
    let mut tag = Tag::new(&e.qualified_name());
    let declare = |tag: Tag, prefix: &Option<String>, uri: &str, scope: &mut Scope| -> Tag {
        if uri == XML_NS || in_scope(scope, prefix).as_deref() == Some(uri) {
            return tag;
        }
        scope.push((prefix.clone(), uri.to_owned()));
        match prefix {
            Some(p) => tag.attr(&format!("xmlns:{p}"), uri),
            None => tag.attr("xmlns", uri),
        }
    };
    match &e.namespace {
        Some(uri) => tag = declare(tag, &e.prefix, uri, scope),
        None => {
            // An element in no namespace inside a default namespace must undo it.
            if in_scope(scope, &None).is_some_and(|u| !u.is_empty()) {
                tag = declare(tag, &None, "", scope);
            }
        }
    }
    for a in &e.attributes {
        if let Some(uri) = &a.namespace {
            tag = declare(tag, &a.prefix, uri, scope);
        }
    }
    for a in &e.attributes {
        let name = match &a.prefix {
            Some(p) => format!("{p}:{}", a.name),
            None => a.name.clone(),
        };
        tag = tag.attr(&name, &a.value);
    }
    let only_text = e.children.iter().all(|c| matches!(c, RawNode::Text(_)));
    if e.children.is_empty() {
        o.line(&tag.empty());
    } else if only_text {
        let text: String = e
            .children
            .iter()
            .filter_map(|c| match c {
                RawNode::Text(t) => Some(escape(t)),
                RawNode::Element(_) => None,
            })
            .collect();
        o.line(&format!("{}{text}</{}>", tag.open(), e.qualified_name()));
    } else {
        o.line(&tag.open());
        o.depth += 1;
        for child in &e.children {
            raw_node(o, child, scope);
        }
        o.depth -= 1;
        o.line(&format!("</{}>", e.qualified_name()));
    }
    scope.truncate(depth_before);
}
