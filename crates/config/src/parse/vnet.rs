//! vnet's own namespace: `<vnet:…>` elements and their checks.

use super::*;

/// An error about an attribute in vnet's namespace (it defines none).
pub(super) fn vnet_attr_err(node: Node<'_, '_>, a: roxmltree::Attribute<'_, '_>) -> Error {
    let mut e = err(
        node,
        format!(
            "unknown attribute 'vnet:{}' on <{}> (vnet's namespace defines no attributes; \
             its elements are <vnet:port-forward>, <vnet:host-access>, <vnet:host-port> and \
             <vnet:port-security>)",
            a.name(),
            qname(node)
        ),
    );
    e.attribute = Some(format!("vnet:{}", a.name()));
    e.value = Some(a.value().into());
    e
}

/// Rejects vnet's namespace inside an element that is kept verbatim (a foreign
/// extension or a `<metadata>` child): vnet would not act on it there.
pub(super) fn no_vnet_inside(node: Node<'_, '_>) -> Result<()> {
    for d in node.descendants().filter(Node::is_element) {
        if d.tag_name().namespace() == Some(VNET_NS) {
            let parent = d.parent_element().unwrap_or(node);
            return Err(err(
                d,
                format!(
                    "<{}> belongs directly under <network>, not inside <{}>",
                    qname(d),
                    qname(parent)
                ),
            ));
        }
        if let Some(a) = d.attributes().find(|a| a.namespace() == Some(VNET_NS)) {
            return Err(vnet_attr_err(d, a));
        }
    }
    Ok(())
}

/// Rejects attributes of a vnet element other than `allowed`, and any content.
pub(super) fn check_vnet_element(node: Node<'_, '_>, allowed: &[&str]) -> Result<()> {
    check_attrs_because(node, allowed, || format!("it takes {}", allowed.join(", ")))?;
    if let Some(child) = elements(node).next() {
        return Err(err(
            child,
            format!("<{}> takes no child elements", qname(node)),
        ));
    }
    if node
        .children()
        .any(|c| c.is_text() && c.text().is_some_and(|t| !t.trim().is_empty()))
    {
        return Err(err(
            node,
            format!("unexpected text inside <{}>", qname(node)),
        ));
    }
    Ok(())
}

/// A port attribute (a number up to 65535; 0 is left to the forward's own checks).
pub(super) fn port_attr(node: Node<'_, '_>, attr: &str) -> Result<Option<u16>> {
    number(node, attr, "a port number (1 to 65535)")
}

/// `<vnet:port-forward>` as written; the caller checks it on its own and in the network.
pub(super) fn vnet_port_forward(node: Node<'_, '_>) -> Result<PortForward> {
    check_vnet_element(node, &["proto", "address", "port", "end", "to", "to-port"])?;
    let proto = match required(node, "proto", "tcp or udp")? {
        "tcp" => ForwardProto::Tcp,
        "udp" => ForwardProto::Udp,
        _ => return Err(err_attr(node, "proto", "expected 'tcp' or 'udp'")),
    };
    let address = ip_attr(node, "address")?;
    required(node, "port", "the host port to listen on")?;
    let port = port_attr(node, "port")?.unwrap_or_default();
    let end = port_attr(node, "end")?;
    required(node, "to", "the guest's address")?;
    let to = ip_attr(node, "to")?.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let to_port = port_attr(node, "to-port")?;
    Ok(PortForward {
        proto,
        address,
        port,
        end,
        to,
        to_port,
    })
}

/// `<vnet:host-access enabled='yes|no'>`, `<vnet:host-port enabled='yes|no'>`,
/// `<vnet:port-security enabled='yes|no'>`.
pub(super) fn vnet_host_access(node: Node<'_, '_>) -> Result<bool> {
    check_vnet_element(node, &["enabled"])?;
    required(node, "enabled", "yes or no")?;
    Ok(yes_no(node, "enabled")?.unwrap_or(true))
}
