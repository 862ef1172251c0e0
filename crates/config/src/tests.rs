//! Unit tests: each rejection names the element, attribute and reason; defaults;
//! overlap; round trips.

use crate::{ipv4_overlap, ForwardMode, LeaseTime, Network};

/// A network named `t` with `body` inside; `<name>` is on line 2, `body` starts on line 3.
fn net(body: &str) -> String {
    format!("<network>\n<name>t</name>\n{body}\n</network>")
}

/// An isolated network with one IPv4 `<ip>` holding `inner`.
fn with_ip(inner: &str) -> String {
    net(&format!(
        "<ip address='192.168.50.1' prefix='24'>{inner}</ip>"
    ))
}

/// Asserts `xml` is rejected at `element`/`attribute` for a reason containing `reason`,
/// and that the one-line message shows all three.
#[track_caller]
fn rejects(xml: &str, element: &str, attribute: Option<&str>, reason: &str) -> crate::Error {
    let e = match Network::from_xml(xml) {
        Ok(n) => panic!("accepted, expected '{reason}':\n{}", n.to_xml()),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(e.element, element, "{msg}");
    assert_eq!(e.attribute.as_deref(), attribute, "{msg}");
    assert!(e.reason.contains(reason), "{msg}");
    assert!(e.line.is_some(), "{msg}");
    assert!(msg.contains(&format!("<{element}")), "{msg}");
    if let Some(a) = attribute {
        assert!(msg.contains(&format!("<{element} {a}")), "{msg}");
    }
    assert!(!msg.contains('\n'), "{msg}");
    e
}

#[test]
fn forward_modes_vnet_cannot_serve() {
    for mode in ["passthrough", "private", "vepa", "hostdev"] {
        let e = rejects(
            &net(&format!(
                "<forward mode='{mode}'><interface dev='eth1'/></forward>"
            )),
            "forward",
            Some("mode"),
            &format!("forward mode '{mode}' is not supported"),
        );
        assert_eq!(e.line, Some(3));
        assert_eq!(e.value.as_deref(), Some(mode));
        assert!(
            e.to_string()
                .starts_with(&format!("line 3: <forward mode='{mode}'>: ")),
            "{e}"
        );
    }
    rejects(
        &net("<forward mode='bogus'/>"),
        "forward",
        Some("mode"),
        "unknown forward mode 'bogus'",
    );
    rejects(
        &net("<forward mode='none'/>"),
        "forward",
        Some("mode"),
        "unknown forward mode",
    );
    rejects(
        &net("<forward mode='nat'><pf dev='eth0'/></forward><ip address='10.1.1.1' prefix='24'/>"),
        "pf",
        None,
        "only used by the hostdev/passthrough forward modes",
    );
    rejects(
        &net("<forward mode='bridge'><address type='pci' domain='0' bus='3' slot='0' function='1'/></forward>"),
        "address",
        None,
        "only used by the hostdev/passthrough forward modes",
    );
}

#[test]
fn open_mode_takes_no_dev() {
    rejects(
        &net("<forward mode='open' dev='eth0'/><ip address='10.1.1.1' prefix='24'/>"),
        "forward",
        Some("dev"),
        "forward mode 'open' does not accept a dev",
    );
    rejects(
        &net("<forward mode='open'><interface dev='eth0'/></forward><ip address='10.1.1.1' prefix='24'/>"),
        "forward",
        None,
        "does not accept forward interfaces",
    );
}

#[test]
fn forward_rules_libvirt_applies() {
    rejects(
        &net("<forward mode='route'/>"),
        "forward",
        None,
        "no <ip> address",
    );
    rejects(
        &net("<forward dev='eth0'><interface dev='eth1'/></forward><ip address='10.1.1.1' prefix='24'/>"),
        "interface",
        Some("dev"),
        "must match the first <interface",
    );
    rejects(
        &net("<forward><interface dev='eth0'/><interface dev='eth1'/></forward><ip address='10.1.1.1' prefix='24'/>"),
        "forward",
        None,
        "multiple forwarding interfaces",
    );
    rejects(
        &net("<forward mode='route'><nat><port start='1' end='2'/></nat></forward><ip address='10.1.1.1' prefix='24'/>"),
        "nat",
        None,
        "only be used with forward mode 'nat'",
    );
    rejects(
        &net("<forward mode='bridge'/><bridge name='br0' stp='on'/>"),
        "bridge",
        Some("stp"),
        "only allowed in route, nat, open and isolated mode",
    );
    rejects(
        &net("<forward mode='bridge'/><bridge name='br0'/><mtu size='9000'/>"),
        "mtu",
        None,
        "mtu size is only allowed",
    );
}

#[test]
fn malformed_xml_and_wrong_root() {
    let e =
        Network::from_xml("<network>\n<name>x</name>\n<bridge name='a'>\n</network>").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.reason.starts_with("malformed XML"), "{e}");
    assert!(e.to_string().starts_with("line 4: malformed XML"), "{e}");
    rejects(
        "<domain><name>x</name></domain>",
        "domain",
        None,
        "the root element must be <network>",
    );
    rejects(
        "<n:network xmlns:n='urn:x'><name>x</name></n:network>",
        "n:network",
        None,
        "the root element must be <network>",
    );
}

#[test]
fn names() {
    rejects(
        "<network><bridge name='x'/></network>",
        "network",
        None,
        "missing <name>",
    );
    rejects(
        "<network><name></name></network>",
        "name",
        None,
        "the network name is empty",
    );
    rejects(
        "<network><name>a/b</name></network>",
        "name",
        None,
        "cannot contain '/'",
    );
    rejects(
        "<network><name>-a</name></network>",
        "name",
        None,
        "cannot start with '.' or '-'",
    );
    rejects(
        "<network><name>.a</name></network>",
        "name",
        None,
        "cannot start with '.' or '-'",
    );
    rejects(
        "<network><name>a b</name></network>",
        "name",
        None,
        "only letters, digits",
    );
    rejects(
        &format!("<network><name>{}</name></network>", "a".repeat(65)),
        "name",
        None,
        "at most 64",
    );
    Network::from_xml(&format!(
        "<network><name>{}</name></network>",
        "a".repeat(64)
    ))
    .unwrap();
    rejects(
        "<network><name>a</name><name>b</name></network>",
        "name",
        None,
        "only once",
    );

    let mut n = Network::libvirt_default();
    n.set_name("lab-1.x_y").unwrap();
    assert_eq!(n.name(), "lab-1.x_y");
    let e = n.set_name("a/b").unwrap_err();
    assert_eq!(e.element, "name");
    assert!(e.to_string().contains("cannot contain '/'"), "{e}");
    assert_eq!(n.name(), "lab-1.x_y");
}

#[test]
fn uuid_and_mac() {
    rejects(
        &net("<uuid>not-a-uuid</uuid>"),
        "uuid",
        None,
        "malformed uuid",
    );
    let n = Network::from_xml(&net("<uuid>81FF0D90C91E674264DA4A736EDB9A8C</uuid>")).unwrap();
    assert_eq!(n.uuid(), Some("81ff0d90-c91e-6742-64da-4a736edb9a8c"));
    rejects(
        &net("<mac address='52:54:00:zz:00:01'/>"),
        "mac",
        Some("address"),
        "not a MAC address",
    );
    rejects(
        &net("<mac address='01:00:5e:00:00:01'/>"),
        "mac",
        Some("address"),
        "expected a unicast MAC",
    );
    rejects(
        &net("<mac/>"),
        "mac",
        Some("address"),
        "missing attribute 'address'",
    );
    let n = Network::from_xml(&net("<mac address='52:54:00:AB:CD:EF'/>")).unwrap();
    assert_eq!(n.mac(), Some("52:54:00:ab:cd:ef"));
}

#[test]
fn ip_addresses_and_masks() {
    rejects(
        &net("<ip address='192.168.1.300' prefix='24'/>"),
        "ip",
        Some("address"),
        "not a valid IPv4 or IPv6",
    );
    rejects(
        &net("<ip prefix='24'/>"),
        "ip",
        Some("address"),
        "missing attribute 'address'",
    );
    rejects(
        &net("<ip address='10.0.0.1' netmask='255.0.255.0'/>"),
        "ip",
        Some("netmask"),
        "not contiguous",
    );
    rejects(
        &net("<ip address='10.0.0.1' netmask='0.0.0.0'/>"),
        "ip",
        Some("netmask"),
        "not contiguous",
    );
    rejects(
        &net("<ip address='10.0.0.1' netmask='255.255.255.0' prefix='24'/>"),
        "ip",
        Some("prefix"),
        "either netmask or prefix, not both",
    );
    rejects(
        &net("<ip address='10.0.0.1' prefix='33'/>"),
        "ip",
        Some("prefix"),
        "prefix out of range",
    );
    rejects(
        &net("<ip address='10.0.0.1' prefix='0'/>"),
        "ip",
        Some("prefix"),
        "prefix out of range",
    );
    rejects(
        &net("<ip family='ipv6' address='fd00::1' prefix='129'/>"),
        "ip",
        Some("prefix"),
        "prefix out of range",
    );
    rejects(
        &net("<ip family='ipv6' address='fd00::1' netmask='255.255.255.0'/>"),
        "ip",
        Some("netmask"),
        "netmask is not allowed with IPv6",
    );
    rejects(
        &net("<ip address='fd00::1' prefix='64'/>"),
        "ip",
        Some("address"),
        "needs family='ipv6'",
    );
    rejects(
        &net("<ip family='ipv6' address='10.0.0.1'/>"),
        "ip",
        Some("address"),
        "does not match",
    );
    rejects(
        &net("<ip family='ipx' address='10.0.0.1'/>"),
        "ip",
        Some("family"),
        "expected 'ipv4' or 'ipv6'",
    );
    rejects(
        &net("<ip address='224.0.0.1'/>"),
        "ip",
        Some("address"),
        "no classful default",
    );
    let n =
        Network::from_xml(&net("<ip address='10.24.10.1'/><ip address='172.16.0.1'/>")).unwrap();
    assert_eq!(
        n.ipv4_subnets(),
        vec![
            ("10.0.0.0".parse().unwrap(), 8),
            ("172.16.0.0".parse().unwrap(), 16)
        ]
    );
}

#[test]
fn dhcp_ranges() {
    rejects(
        &with_ip("<dhcp><range start='192.168.51.2' end='192.168.50.254'/></dhcp>"),
        "range",
        Some("start"),
        "DHCP range start is outside the <ip> subnet 192.168.50.0/24",
    );
    rejects(
        &with_ip("<dhcp><range start='192.168.50.2' end='192.168.51.254'/></dhcp>"),
        "range",
        Some("end"),
        "outside the <ip> subnet",
    );
    rejects(
        &with_ip("<dhcp><range start='192.168.50.200' end='192.168.50.100'/></dhcp>"),
        "range",
        Some("end"),
        "ends before it starts",
    );
    rejects(
        &with_ip("<dhcp><range start='fd00::2' end='fd00::9'/></dhcp>"),
        "range",
        Some("start"),
        "outside the <ip> subnet",
    );
    rejects(
        &with_ip("<dhcp><range start='192.168.50.2'/></dhcp>"),
        "range",
        Some("end"),
        "missing attribute 'end'",
    );
}

#[test]
fn dhcp_hosts() {
    rejects(
        &with_ip("<dhcp><host mac='00:16:3e:00:00:01' ip='192.168.60.5'/></dhcp>"),
        "host",
        Some("ip"),
        "DHCP host address is outside the <ip> subnet 192.168.50.0/24",
    );
    rejects(
        &with_ip("<dhcp><host mac='00:16:3e:00:00:01' ip='192.168.50.5'/><host mac='00:16:3E:00:00:01' ip='192.168.50.6'/></dhcp>"),
        "host",
        Some("mac"),
        "another DHCP host already has this MAC address",
    );
    rejects(
        &with_ip("<dhcp><host mac='00:16:3e:00:00:01' ip='192.168.50.5'/><host name='b' ip='192.168.50.5'/></dhcp>"),
        "host",
        Some("ip"),
        "another DHCP host already has this IP address",
    );
    rejects(
        &with_ip("<dhcp><host ip='192.168.50.5'/></dhcp>"),
        "host",
        None,
        "needs a mac or a name",
    );
    rejects(
        &with_ip("<dhcp><host mac='01:16:3e:00:00:01' ip='192.168.50.5'/></dhcp>"),
        "host",
        Some("mac"),
        "expected a unicast MAC",
    );
    rejects(
        &net("<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host mac='00:16:3e:00:00:01' ip='fd00::5'/></dhcp></ip>"),
        "host",
        Some("mac"),
        "not allowed in an IPv6 DHCP host",
    );
    rejects(
        &with_ip("<dhcp><host mac='00:16:3e:00:00:01' ip='192.168.50.300'/></dhcp>"),
        "host",
        Some("ip"),
        "not a valid IPv4 or IPv6 address",
    );
}

#[test]
fn one_dhcp_per_family() {
    let xml = net(
        "<ip address='192.168.50.1' prefix='24'><dhcp><range start='192.168.50.2' end='192.168.50.9'/></dhcp></ip>\n\
         <ip address='192.168.51.1' prefix='24'><dhcp><range start='192.168.51.2' end='192.168.51.9'/></dhcp></ip>",
    );
    let e = rejects(
        &xml,
        "dhcp",
        None,
        "only one IPv4 <ip> of a network may have <dhcp>",
    );
    assert_eq!(e.line, Some(4));
    // One per family is fine.
    Network::from_xml(&net(
        "<ip address='192.168.50.1' prefix='24'><dhcp><range start='192.168.50.2' end='192.168.50.9'/></dhcp></ip>\n\
         <ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::ff'/></dhcp></ip>",
    ))
    .unwrap();
}

#[test]
fn leases() {
    rejects(
        &with_ip("<dhcp><range start='192.168.50.2' end='192.168.50.9'><lease expiry='5' unit='days'/></range></dhcp>"),
        "lease",
        Some("unit"),
        "expected 'seconds', 'minutes' or 'hours'",
    );
    rejects(
        &with_ip("<dhcp><range start='192.168.50.2' end='192.168.50.9'><lease expiry='60' unit='seconds'/></range></dhcp>"),
        "lease",
        Some("expiry"),
        "minimum lease time is 2 minutes",
    );
    let n = Network::from_xml(&with_ip(
        "<dhcp><range start='192.168.50.2' end='192.168.50.9'><lease expiry='2' unit='hours'/></range>\
         <range start='192.168.50.20' end='192.168.50.29'/>\
         <host mac='00:16:3e:00:00:01' ip='192.168.50.5'><lease expiry='0'/></host>\
         <host mac='00:16:3e:00:00:02' ip='192.168.50.6'><lease expiry='10'/></host></dhcp>",
    ))
    .unwrap();
    let dhcp = n.ips()[0].dhcp.as_ref().unwrap();
    assert_eq!(dhcp.ranges[0].lease_time(), LeaseTime::Seconds(7200));
    assert_eq!(
        dhcp.ranges[1].lease_time(),
        LeaseTime::Seconds(crate::DEFAULT_LEASE_SECS)
    );
    assert_eq!(dhcp.hosts[0].lease_time(), LeaseTime::Infinite);
    // The default unit is minutes, and libvirt writes it out.
    assert_eq!(dhcp.hosts[1].lease_time(), LeaseTime::Seconds(600));
    assert!(n.to_xml().contains("<lease expiry='10' unit='minutes'/>"));
    // A range without <lease> stays without one.
    assert!(n
        .to_xml()
        .contains("<range start='192.168.50.20' end='192.168.50.29'/>"));
}

#[test]
fn dns_records() {
    rejects(
        &net("<dns><host><hostname>a</hostname></host></dns>"),
        "host",
        Some("ip"),
        "missing attribute 'ip'",
    );
    rejects(
        &net("<dns><host ip='10.0.0.1'/></dns>"),
        "host",
        None,
        "needs at least one <hostname>",
    );
    rejects(
        &net("<dns><host ip='10.0.0.1'><hostname> </hostname></host></dns>"),
        "hostname",
        None,
        "empty <hostname>",
    );
    rejects(
        &net("<dns><srv protocol='tcp'/></dns>"),
        "srv",
        Some("service"),
        "missing attribute 'service'",
    );
    rejects(
        &net("<dns><srv service='ldap'/></dns>"),
        "srv",
        Some("protocol"),
        "missing attribute 'protocol'",
    );
    rejects(
        &net("<dns><srv service='ldap' protocol='sctp'/></dns>"),
        "srv",
        Some("protocol"),
        "'tcp' or 'udp'",
    );
    rejects(
        &net("<dns><srv service='a-very-long-service' protocol='tcp'/></dns>"),
        "srv",
        Some("service"),
        "1 to 15 characters",
    );
    rejects(
        &net("<dns><srv service='ldap' protocol='tcp' port='389'/></dns>"),
        "srv",
        Some("port"),
        "without a target",
    );
    rejects(
        &net("<dns><txt value='v'/></dns>"),
        "txt",
        Some("name"),
        "missing attribute 'name'",
    );
    rejects(
        &net("<dns><txt name='a b' value='v'/></dns>"),
        "txt",
        Some("name"),
        "no space or comma",
    );
    rejects(
        &net("<dns><txt name='a'/></dns>"),
        "txt",
        Some("value"),
        "missing attribute 'value'",
    );
    rejects(
        &net("<dns><forwarder/></dns>"),
        "forwarder",
        None,
        "needs addr, domain or both",
    );
    rejects(
        &net("<dns><forwarder addr='1.2.3'/></dns>"),
        "forwarder",
        Some("addr"),
        "not a valid",
    );
    rejects(
        &net("<dns enable='no'><forwarder addr='1.1.1.1'/></dns>"),
        "dns",
        Some("enable"),
        "DNS is disabled",
    );
    rejects(
        &net("<dns enable='maybe'/>"),
        "dns",
        Some("enable"),
        "expected 'yes' or 'no'",
    );
    let n = Network::from_xml(&net(
        "<dns forwardPlainNames='no'><forwarder addr='9.9.9.9' port='5353'/><forwarder domain='lan'/>\
         <host ip='10.0.0.7'><hostname>a</hostname><hostname>b</hostname></host>\
         <srv service='ldap' protocol='tcp' target='dc' port='389' priority='0'/><txt name='k' value='v'/></dns>",
    ))
    .unwrap();
    let dns = n.dns();
    assert_eq!(dns.forwarders[0].port, Some(5353));
    assert_eq!(dns.hosts[0].hostnames, ["a", "b"]);
    // libvirt writes a zero priority as absent.
    assert_eq!(dns.srvs[0].priority, None);
    assert_eq!(dns.forward_plain_names, Some(false));
}

#[test]
fn unknown_elements_and_attributes() {
    rejects(
        &net("<frobnicate/>"),
        "frobnicate",
        None,
        "unknown element <frobnicate> in <network>",
    );
    rejects(
        &net("<bridge name='virbr9' colour='blue'/>"),
        "bridge",
        Some("colour"),
        "unknown attribute 'colour'",
    );
    rejects(
        &with_ip("<dhcp><lease expiry='10'/></dhcp>"),
        "lease",
        None,
        "unknown element <lease> inside <dhcp>",
    );
    rejects(
        &with_ip("<x:y xmlns:x='urn:x'/>"),
        "x:y",
        None,
        "foreign-namespace element <x:y> is not allowed inside <ip>",
    );
    rejects(
        &net("<bridge name='a/b'/>"),
        "bridge",
        Some("name"),
        "cannot be '.' or '..' or contain '/'",
    );
    rejects(
        &net("<bridge name='averyveryverylongname'/>"),
        "bridge",
        Some("name"),
        "1 to 15 bytes",
    );
    rejects(
        &net("<bridge stp='maybe'/>"),
        "bridge",
        Some("stp"),
        "expected 'on' or 'off'",
    );
    rejects(
        &net("<mtu size='20'/>"),
        "mtu",
        Some("size"),
        "between 68 and 65535",
    );
    rejects(
        &net("<vlan><tag id='5000'/></vlan>"),
        "tag",
        Some("id"),
        "0 to 4095",
    );
    rejects(
        &net("<bandwidth><inbound average='10' floor='5'/></bandwidth>"),
        "inbound",
        Some("floor"),
        "floor is only valid on a guest interface",
    );
    rejects(
        &net("<virtualport><parameters profileid='x'/></virtualport>"),
        "virtualport",
        Some("type"),
        "needs a type",
    );
    rejects(
        &net("<portgroup name='a' default='yes'/><portgroup name='b' default='yes'/>"),
        "portgroup",
        Some("default"),
        "only one default",
    );
    rejects(
        &net("<portgroup name='a'/><portgroup name='a'/>"),
        "portgroup",
        Some("name"),
        "already exists",
    );
    rejects(
        &net("<ip address='10.0.0.1' prefix='24'/><route address='10.9.0.0' prefix='16' gateway='10.1.0.1'/>"),
        "route",
        Some("gateway"),
        "unreachable static route gateway",
    );
    rejects(
        &net("<dnsmasq:thing xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'/>"),
        "dnsmasq:thing",
        None,
        "unknown element <dnsmasq:thing> in the dnsmasq namespace",
    );
}

#[test]
fn foreign_elements_are_kept() {
    let xml = net("<ext:policy xmlns:ext='urn:example:ext' ext:level='3'><ext:rule>allow</ext:rule></ext:policy>\n\
                   <other xmlns='urn:example:other' a='1'><inner/></other>");
    let n = Network::from_xml(&xml).unwrap();
    assert_eq!(n.extensions().len(), 2);
    assert_eq!(n.warnings().len(), 2, "{:?}", n.warnings());
    let out = n.to_xml();
    assert!(
        out.contains("<ext:policy xmlns:ext='urn:example:ext' ext:level='3'>"),
        "{out}"
    );
    assert!(out.contains("<ext:rule>allow</ext:rule>"), "{out}");
    assert!(
        out.contains("<other xmlns='urn:example:other' a='1'>"),
        "{out}"
    );
    assert_eq!(Network::from_xml(&out).unwrap(), n);
}

#[test]
fn escaping() {
    let n = Network::from_xml(&net(
        "<title>a &lt;b&gt; &amp; 'c' \"d\"</title><description>x &amp; y</description>",
    ))
    .unwrap();
    assert_eq!(n.title(), Some("a <b> & 'c' \"d\""));
    let out = n.to_xml();
    assert!(
        out.contains("<title>a &lt;b&gt; &amp; &apos;c&apos; &quot;d&quot;</title>"),
        "{out}"
    );
    assert_eq!(Network::from_xml(&out).unwrap(), n);
    rejects(
        &net("<title>a\nb</title>"),
        "title",
        None,
        "cannot contain newlines",
    );
}

/// Tabs and line breaks in attribute values (and a carriage return anywhere) are
/// written as character references, so they survive the next load (found by the
/// xml_loader fuzz target: a namespace URI with `&#xd;` in it).
#[test]
fn whitespace_characters_in_attributes_survive_a_round_trip() {
    let xml = "<network xmlns:x='urn:a&#xd;b&#xa;c&#x9;d'><name>e</name><metadata>\
               <x:y v='1&#xd;2&#xa;3'>t&#xd;u</x:y></metadata></network>";
    let n = Network::from_xml(xml).unwrap();
    let out = n.to_xml();
    assert!(out.contains("xmlns:x='urn:a&#xD;b&#xA;c&#x9;d'"), "{out}");
    assert!(out.contains("v='1&#xD;2&#xA;3'"), "{out}");
    assert!(out.contains(">t&#xD;u<"), "{out}");
    assert_eq!(Network::from_xml(&out).unwrap(), n);
}

#[test]
fn libvirt_parser_defaults() {
    let n = Network::libvirt_default();
    assert_eq!(n.forward_mode(), ForwardMode::Nat);
    assert_eq!(n.bridge_name(), Some("virbr0"));
    assert_eq!(n.bridge().stp, Some(true));
    assert_eq!(n.bridge().delay, Some(0));
    assert_eq!(n.uuid(), None);
    assert_eq!(n.mac(), None);
    assert_eq!(
        n.ipv4_subnets(),
        vec![("192.168.122.0".parse().unwrap(), 24)]
    );
    assert!(n.warnings().is_empty());
    // <forward dev> gets its <interface>; a bridge gets stp/delay.
    let n = Network::from_xml(&net(
        "<forward dev='eth1'/><ip address='10.0.0.1' prefix='24'/>",
    ))
    .unwrap();
    assert_eq!(n.forward().interfaces, ["eth1"]);
    assert!(n.to_xml().contains(
        "  <forward dev='eth1' mode='nat'>\n    <interface dev='eth1'/>\n  </forward>\n  <bridge stp='on' delay='0'/>\n"
    ));
}

#[test]
fn fill_defaults_generates_what_define_generates() {
    let mut n = Network::libvirt_default();
    n.fill_defaults(&[]);
    let uuid = n.uuid().unwrap().to_owned();
    let parsed = uuid::Uuid::parse_str(&uuid).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(parsed.hyphenated().to_string(), uuid);
    let mac = n.mac().unwrap().to_owned();
    assert!(mac.starts_with("52:54:00:"), "{mac}");
    assert!(!n.mac_addr().unwrap().is_multicast());
    assert_eq!(n.bridge_name(), Some("virbr0"), "a given name is kept");
    // Filling again changes nothing.
    let before = n.clone();
    n.fill_defaults(&["virbr0".into()]);
    assert_eq!(n, before);

    // Bridge names: the lowest free virbrN, also for a %d template.
    let mut n = Network::from_xml(&net("<ip address='10.0.0.1' prefix='24'/>")).unwrap();
    n.fill_defaults(&["virbr0".into(), "virbr2".into()]);
    assert_eq!(n.bridge_name(), Some("virbr1"));
    let mut n = Network::from_xml(&net("<bridge name='lab%d'/>")).unwrap();
    n.fill_defaults(&["lab0".into()]);
    assert_eq!(n.bridge_name(), Some("lab1"));

    // Bridge mode: a UUID, but no MAC or bridge of its own.
    let mut n = Network::from_xml(&net("<forward mode='bridge'/><bridge name='br0'/>")).unwrap();
    n.fill_defaults(&[]);
    assert!(n.uuid().is_some());
    assert_eq!(n.mac(), None);
    assert_eq!(n.bridge_name(), Some("br0"));
    // The filled network round-trips.
    let mut n = Network::libvirt_default();
    n.fill_defaults(&[]);
    assert_eq!(Network::from_xml(&n.to_xml()).unwrap(), n);
}

#[test]
fn overlaps() {
    let a = Network::libvirt_default();
    let b = Network::from_xml(&net("<ip address='192.168.0.1' prefix='16'/>")).unwrap();
    let c = Network::from_xml(&net("<ip address='192.168.123.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/>")).unwrap();
    let msg = ipv4_overlap(&a, &b).unwrap();
    assert!(
        msg.contains("192.168.122.0/24") && msg.contains("192.168.0.0/16"),
        "{msg}"
    );
    assert!(msg.contains("'default'") && msg.contains("'t'"), "{msg}");
    assert!(ipv4_overlap(&b, &a).is_some());
    assert!(ipv4_overlap(&a, &c).is_none());
    assert!(ipv4_overlap(&b, &c).is_some());
    let isolated = Network::from_xml(&net("")).unwrap();
    assert!(ipv4_overlap(&a, &isolated).is_none());
}

#[test]
fn from_file_names_the_file() {
    let dir = std::env::temp_dir().join(format!("vnet-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.xml");
    std::fs::write(
        &path,
        "<network>\n<name>x</name>\n<forward mode='vepa'/>\n</network>\n",
    )
    .unwrap();
    let e = Network::from_file(&path).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(path.as_path()));
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3: <forward mode='vepa'>: ", path.display())),
        "{e}"
    );
    let e = Network::from_file(&dir.join("missing.xml")).unwrap_err();
    assert!(
        e.to_string().contains("missing.xml: cannot read the file"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn round_trip_of_a_rich_definition() {
    let xml = "<network ipv6='yes' trustGuestRxFilters='no'>
  <name>rich</name>
  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>
  <title>Rich</title>
  <description>All the things</description>
  <metadata><m:x xmlns:m='urn:m'>1</m:x></metadata>
  <forward mode='nat' dev='eth0'><nat ipv6='yes'><address start='1.2.3.4' end='1.2.3.8'/><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr5' stp='off' delay='2' zone='trusted' macTableManager='libvirt'/>
  <mtu size='9000'/>
  <mac address='52:54:00:01:02:03'/>
  <domain name='rich.lan' localOnly='yes' register='yes'/>
  <dns><txt name='t' value='v'/></dns>
  <vlan trunk='yes'><tag id='10' nativeMode='untagged'/><tag id='20'/></vlan>
  <bandwidth><inbound average='100' peak='200' burst='64'/></bandwidth>
  <port isolated='yes'/>
  <ip address='10.5.0.1' netmask='255.255.0.0' localPtr='yes'><tftp root='/srv/tftp'/><dhcp><range start='10.5.0.10' end='10.5.0.99'/><bootp file='pxe.0' server='10.5.0.1'/></dhcp></ip>
  <ip family='ipv6' address='fd00:5::1' prefix='64'/>
  <route address='10.6.0.0' prefix='16' gateway='10.5.0.2' metric='5'/>
  <route family='ipv6' address='fd00:6::' prefix='64' gateway='fd00:5::2'/>
  <portgroup name='pg' default='yes' trustGuestRxFilters='yes'><bandwidth><outbound average='5'/></bandwidth></portgroup>
</network>";
    let n = Network::from_xml(xml).unwrap();
    assert!(n.ports_isolated());
    assert!(n.ipv6_without_gateway());
    assert_eq!(n.mtu(), Some(9000));
    assert_eq!(n.domain().unwrap().local_only, Some(true));
    assert_eq!(n.forward().nat.as_ref().unwrap().ports, Some((1024, 65535)));
    assert_eq!(n.routes().len(), 2);
    assert_eq!(n.ipv4_subnets(), vec![("10.5.0.0".parse().unwrap(), 16)]);
    let out = n.to_xml();
    assert_eq!(Network::from_xml(&out).unwrap(), n, "{out}");
    // libvirt's element order.
    let order: Vec<usize> = [
        "<name>",
        "<uuid>",
        "<title>",
        "<description>",
        "<metadata>",
        "<forward",
        "<bridge",
        "<mtu",
        "<mac",
        "<domain",
        "<dns>",
        "<vlan",
        "<bandwidth>",
        "<port isolated",
        "<ip ",
        "<route",
        "<portgroup",
    ]
    .iter()
    .map(|t| {
        out.find(t)
            .unwrap_or_else(|| panic!("{t} missing in\n{out}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
}

// ---------------------------------------------------------------------------------------
// vnet's own namespace: <vnet:port-forward>, <vnet:host-access>

use crate::{ForwardProto, PortForward, VNET_NS};

/// A NAT network on 192.168.122.1/24 declaring the vnet prefix; `body` starts on line 5.
fn vnet_net(body: &str) -> String {
    vnet_net_mode("<forward mode='nat'/>", body)
}

/// As [`vnet_net`], with `forward` instead of `<forward mode='nat'/>`.
fn vnet_net_mode(forward: &str, body: &str) -> String {
    format!(
        "<network xmlns:vnet='{VNET_NS}'>\n<name>t</name>\n{forward}\n\
         <ip address='192.168.122.1' prefix='24'/>\n{body}\n</network>"
    )
}

fn pf(spec: &str) -> PortForward {
    PortForward::parse_spec(spec).unwrap()
}

#[test]
fn vnet_elements_round_trip() {
    let xml = "<network xmlns:vnet='https://vnet.dev/xmlns/network/1' \
               xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>fw</name>
  <vnet:host-access enabled='no'/>
  <vnet:host-port enabled='no'/>
  <vnet:port-security enabled='yes'/>
  <ext:x xmlns:ext='urn:ext'/>
  <vnet:port-forward proto='tcp' address='0.0.0.0' port='8080' end='8090' to='192.168.122.10' to-port='80'/>
  <forward mode='nat'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
  <dnsmasq:options><dnsmasq:option value='log-queries'/></dnsmasq:options>
  <vnet:port-forward proto='udp' port='5353' to='192.168.122.10'/>
</network>";
    let n = Network::from_xml(xml).unwrap();
    assert_eq!(
        n.port_forwards(),
        [
            PortForward {
                proto: ForwardProto::Tcp,
                address: Some("0.0.0.0".parse().unwrap()),
                port: 8080,
                end: Some(8090),
                to: "192.168.122.10".parse().unwrap(),
                to_port: Some(80),
            },
            PortForward {
                proto: ForwardProto::Udp,
                address: None,
                port: 5353,
                end: None,
                to: "192.168.122.10".parse().unwrap(),
                to_port: None,
            },
        ]
    );
    assert!(!n.host_access());
    // Parsed, not kept: only the foreign element and the dnsmasq option warn.
    assert_eq!(n.extensions().len(), 1);
    assert_eq!(n.warnings().len(), 2, "{:?}", n.warnings());

    let out = n.to_xml();
    assert_eq!(
        out,
        "<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0' \
         xmlns:vnet='https://vnet.dev/xmlns/network/1'>
  <name>fw</name>
  <forward mode='nat'/>
  <bridge stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='log-queries'/>
  </dnsmasq:options>
  <vnet:port-forward proto='tcp' address='0.0.0.0' port='8080' end='8090' to='192.168.122.10' to-port='80'/>
  <vnet:port-forward proto='udp' port='5353' to='192.168.122.10'/>
  <vnet:host-access enabled='no'/>
  <vnet:host-port enabled='no'/>
  <vnet:port-security enabled='yes'/>
  <ext:x xmlns:ext='urn:ext'/>
</network>
"
    );
    assert!(!n.host_port());
    assert!(n.port_security());
    let again = Network::from_xml(&out).unwrap();
    assert_eq!(again, n);
    assert_eq!(again.to_xml(), out, "the written form is a fixpoint");
}

#[test]
fn port_security_per_portgroup() {
    let xml = vnet_net(
        "<vnet:port-security enabled='yes'/>\n\
         <portgroup name='lab' default='yes'><vnet:port-security enabled='no'/></portgroup>\n\
         <portgroup name='dmz'><vlan><tag id='5'/></vlan><vnet:port-security enabled='yes'/></portgroup>\n\
         <portgroup name='plain'/>",
    );
    let n = Network::from_xml(&xml).unwrap();
    let lab = n.portgroup("lab").unwrap();
    assert_eq!(lab.port_security, Some(false));
    assert_eq!(n.default_portgroup().map(|g| g.name.as_str()), Some("lab"));
    // the group's setting wins; a group without one takes the network's
    assert!(!n.port_security_in(Some(lab)));
    assert!(n.port_security_in(n.portgroup("dmz")));
    assert!(n.port_security_in(n.portgroup("plain")));
    assert!(n.port_security_in(None));
    assert!(n.portgroup("nope").is_none());

    let out = n.to_xml();
    assert!(
        out.contains(
            "  <portgroup name='lab' default='yes'>\n    <vnet:port-security enabled='no'/>\n  </portgroup>\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  <portgroup name='dmz'>\n    <vlan>\n      <tag id='5'/>\n    </vlan>\n    <vnet:port-security enabled='yes'/>\n  </portgroup>\n"),
        "{out}"
    );
    let again = Network::from_xml(&out).unwrap();
    assert_eq!(again, n);
    assert_eq!(again.to_xml(), out, "the written form is a fixpoint");

    // only a portgroup's own settings declare the prefix: it is still written
    let only = Network::from_xml(&vnet_net(
        "<portgroup name='g'><vnet:port-security enabled='yes'/></portgroup>",
    ))
    .unwrap();
    assert!(!only.port_security());
    assert!(only.port_security_in(only.portgroup("g")));
    let out = only.to_xml();
    assert!(out.starts_with("<network xmlns:vnet="), "{out}");
    assert_eq!(Network::from_xml(&out).unwrap(), only);

    // what a portgroup does not take
    rejects(
        &vnet_net("<portgroup name='g'><vnet:host-access enabled='no'/></portgroup>"),
        "vnet:host-access",
        None,
        "belongs directly under <network>",
    );
    rejects(
        &vnet_net(
            "<portgroup name='g'><vnet:port-security enabled='yes'/>\
             <vnet:port-security enabled='no'/></portgroup>",
        ),
        "vnet:port-security",
        None,
        "more than once",
    );
    rejects(
        &vnet_net("<portgroup name='g'><vnet:port-security enabled='maybe'/></portgroup>"),
        "vnet:port-security",
        Some("enabled"),
        "'yes' or 'no'",
    );
}

#[test]
fn a_host_port_needs_a_gateway() {
    let e = Network::from_xml(
        "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>b</name>\
         <forward mode='bridge'/><bridge name='br0'/><vnet:host-port enabled='yes'/></network>",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vnet:host-port") && e.contains("bridge"), "{e}");
}

#[test]
fn vnet_defaults_and_prefixes() {
    // Nothing of vnet's: no declaration written, host access on.
    let n = Network::libvirt_default();
    assert!(n.port_forwards().is_empty());
    assert!(n.host_access());
    assert!(!n.to_xml().contains("xmlns:vnet"), "{}", n.to_xml());

    // Only host-access (even enabled='yes', kept as written): the declaration is written.
    let n = Network::from_xml(&vnet_net("<vnet:host-access enabled='yes'/>")).unwrap();
    assert!(n.host_access());
    let out = n.to_xml();
    assert!(
        out.starts_with("<network xmlns:vnet='https://vnet.dev/xmlns/network/1'>"),
        "{out}"
    );
    assert!(
        out.contains("  <vnet:host-access enabled='yes'/>\n"),
        "{out}"
    );
    assert_eq!(Network::from_xml(&out).unwrap(), n);

    // A forward without address, end or to-port.
    let n = Network::from_xml(&vnet_net(
        "<vnet:port-forward proto='tcp' port='2222' to='192.168.122.5'/>",
    ))
    .unwrap();
    let f = &n.port_forwards()[0];
    assert_eq!(f.host_ports(), 2222..=2222);
    assert_eq!(
        f.listen_address(),
        std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(f.guest_port_for(2222), Some(2222));
    assert_eq!(f.guest_port_for(2223), None);
    assert_eq!(f.to_string(), "tcp:2222:192.168.122.5");

    // Any prefix (or the default namespace) for vnet's URI; written back as vnet:.
    let xml = format!(
        "<network xmlns:v='{VNET_NS}'><name>t</name><forward/>\
         <ip address='192.168.122.1' prefix='24'/>\
         <v:port-forward proto='udp' port='53' to='192.168.122.9'/>\
         <host-access xmlns='{VNET_NS}' enabled='no'/></network>"
    );
    let n = Network::from_xml(&xml).unwrap();
    assert_eq!(n.forward_mode(), ForwardMode::Nat, "<forward/> is nat");
    assert_eq!(n.port_forwards().len(), 1);
    assert!(!n.host_access());
    let out = n.to_xml();
    assert!(
        out.contains("<vnet:port-forward proto='udp' port='53' to='192.168.122.9'/>"),
        "{out}"
    );
    assert!(!out.contains("xmlns:v="), "{out}");

    // A foreign element that binds the vnet prefix to another URI keeps its own binding.
    let xml = vnet_net(
        "<vnet:host-access enabled='no'/><o:x xmlns:o='urn:o'><vnet:y xmlns:vnet='urn:other'/></o:x>",
    );
    let n = Network::from_xml(&xml).unwrap();
    let out = n.to_xml();
    assert!(out.contains("<vnet:y xmlns:vnet='urn:other'/>"), "{out}");
    assert_eq!(Network::from_xml(&out).unwrap(), n);
}

#[test]
fn port_forward_ranges() {
    let f = pf("tcp:8080-8090:192.168.122.10:80");
    assert_eq!(f.host_ports(), 8080..=8090);
    assert_eq!(f.guest_port_for(8080), Some(80));
    assert_eq!(f.guest_port_for(8085), Some(85));
    assert_eq!(f.guest_port_for(8090), Some(90));
    assert_eq!(f.guest_port_for(8079), None);
    assert_eq!(f.guest_port_for(8091), None);
    // Without to-port, each host port goes to the same guest port.
    let f = pf("udp:5000-5010:192.168.122.10");
    assert_eq!(f.guest_port_for(5007), Some(5007));
    // The top of the port space.
    let f = pf("tcp:65530-65535:192.168.122.10:65530");
    assert_eq!(f.guest_port_for(65535), Some(65535));
}

#[test]
fn port_forward_errors() {
    let e = rejects(
        &vnet_net("<vnet:port-forward proto='sctp' port='80' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("proto"),
        "expected 'tcp' or 'udp'",
    );
    assert_eq!(e.line, Some(5));
    assert!(
        e.to_string()
            .starts_with("line 5: <vnet:port-forward proto='sctp'>: "),
        "{e}"
    );
    rejects(
        &vnet_net("<vnet:port-forward port='80' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("proto"),
        "missing attribute 'proto'",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("port"),
        "missing attribute 'port'",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80'/>"),
        "vnet:port-forward",
        Some("to"),
        "missing attribute 'to'",
    );
    let e = rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='0' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("port"),
        "a port is 1 to 65535",
    );
    assert_eq!(e.value.as_deref(), Some("0"));
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='70000' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("port"),
        "expected a port number",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='192.168.122.10' to-port='0'/>"),
        "vnet:port-forward",
        Some("to-port"),
        "a port is 1 to 65535",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='8080' end='8000' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("end"),
        "the port range ends before it starts (end 8000 is below port 8080)",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='8080' end='8090' to='192.168.122.10' to-port='65530'/>"),
        "vnet:port-forward",
        Some("to-port"),
        "host ports 8080-8090 would go to guest ports 65530-65540, past 65535",
    );
    rejects(
        &vnet_net(
            "<vnet:port-forward proto='tcp' address='224.0.0.1' port='80' to='192.168.122.10'/>",
        ),
        "vnet:port-forward",
        Some("address"),
        "must be a unicast IPv4 address of the host",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' address='::1' port='80' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("address"),
        "are of different families",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='fd00::5'/>"),
        "vnet:port-forward",
        Some("to"),
        "needs the network to masquerade IPv6",
    );
    // IPv6 guests: with <nat ipv6='yes'/>, inside an IPv6 <ip>
    let v6 = |body: &str| {
        format!(
            "<network xmlns:vnet='{VNET_NS}'>\n<name>t</name>\n\
             <forward mode='nat'><nat ipv6='yes'/></forward>\n\
             <ip address='192.168.122.1' prefix='24'/>\n\
             <ip family='ipv6' address='fd00:5::1' prefix='64'/>\n{body}\n</network>"
        )
    };
    rejects(
        &v6("<vnet:port-forward proto='tcp' port='80' to='fd00:6::5'/>"),
        "vnet:port-forward",
        Some("to"),
        "outside the network's IPv6 subnets (fd00:5::/64)",
    );
    rejects(
        &v6("<vnet:port-forward proto='tcp' port='80' to='fd00:5::1'/>"),
        "vnet:port-forward",
        Some("to"),
        "is the gateway's own address",
    );
    let n = Network::from_xml(&v6(
        "<vnet:port-forward proto='tcp' port='80' to='fd00:5::5'/>\n\
         <vnet:port-forward proto='tcp' port='80' to='192.168.122.5'/>",
    ))
    .expect("an IPv6 and an IPv4 forward of one port: two listeners");
    assert_eq!(n.port_forwards()[0].to_string(), "tcp:80:[fd00:5::5]");
    assert_eq!(
        n.port_forwards()[0].listen_address(),
        "::".parse::<std::net::IpAddr>().unwrap()
    );
    rejects(
        &v6(
            "<vnet:port-forward proto='tcp' port='80' to='fd00:5::5'/>\n\
             <vnet:port-forward proto='tcp' address='::1' port='80' to='fd00:5::6'/>",
        ),
        "vnet:port-forward",
        Some("port"),
        "(:: listens on every IPv6 address)",
    );

    // The guest address, against the network's <ip>s.
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='10.0.0.5'/>"),
        "vnet:port-forward",
        Some("to"),
        "the guest address 10.0.0.5 is outside the network's IPv4 subnets (192.168.122.0/24)",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='192.168.122.1'/>"),
        "vnet:port-forward",
        Some("to"),
        "192.168.122.1 is the gateway's own address",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='192.168.122.0'/>"),
        "vnet:port-forward",
        Some("to"),
        "the network address of 192.168.122.0/24",
    );
    rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='192.168.122.255'/>"),
        "vnet:port-forward",
        Some("to"),
        "the broadcast address of 192.168.122.0/24",
    );
    rejects(
        &format!(
            "<network xmlns:vnet='{VNET_NS}'><name>t</name><forward/>\
             <ip family='ipv6' address='fd00::1' prefix='64'/>\
             <vnet:port-forward proto='tcp' port='80' to='10.0.0.5'/></network>"
        ),
        "vnet:port-forward",
        Some("to"),
        "the network has no IPv4 <ip>",
    );
    // A second subnet counts; a /31 has no network or broadcast address.
    let n = Network::from_xml(&vnet_net(
        "<ip address='10.9.0.0' prefix='31'/>\
         <vnet:port-forward proto='tcp' port='80' to='10.9.0.1'/>",
    ))
    .unwrap();
    assert_eq!(n.port_forwards().len(), 1);

    // Overlaps: same protocol, overlapping addresses (0.0.0.0 overlaps all), ranges.
    let e = rejects(
        &vnet_net(
            "<vnet:port-forward proto='tcp' port='8080' end='8090' to='192.168.122.10'/>\n\
             <vnet:port-forward proto='tcp' port='8090' to='192.168.122.11'/>",
        ),
        "vnet:port-forward",
        Some("port"),
        "tcp 0.0.0.0:8090 overlaps the forward tcp:8080-8090:192.168.122.10, which already \
         listens on tcp 0.0.0.0:8080-8090",
    );
    assert_eq!(e.line, Some(6), "the second forward is at fault");
    rejects(
        &vnet_net(
            "<vnet:port-forward proto='udp' address='127.0.0.1' port='5000' end='5010' to='192.168.122.10'/>\
             <vnet:port-forward proto='udp' address='0.0.0.0' port='4990' end='5000' to='192.168.122.11'/>",
        ),
        "vnet:port-forward",
        Some("port"),
        "(0.0.0.0 listens on every address)",
    );
    rejects(
        &vnet_net(
            "<vnet:port-forward proto='udp' port='53' to='192.168.122.10'/>\
             <vnet:port-forward proto='udp' address='10.1.1.1' port='53' to='192.168.122.11'/>",
        ),
        "vnet:port-forward",
        Some("port"),
        "(0.0.0.0 listens on every address)",
    );
    // No overlap: other protocol, two specific addresses, adjacent ranges.
    let n = Network::from_xml(&vnet_net(
        "<vnet:port-forward proto='tcp' port='53' to='192.168.122.10'/>\
         <vnet:port-forward proto='udp' port='53' to='192.168.122.10'/>\
         <vnet:port-forward proto='tcp' address='10.1.1.1' port='80' to='192.168.122.10'/>\
         <vnet:port-forward proto='tcp' address='10.1.1.2' port='80' to='192.168.122.11'/>\
         <vnet:port-forward proto='tcp' port='1000' end='1999' to='192.168.122.12'/>\
         <vnet:port-forward proto='tcp' port='2000' end='2999' to='192.168.122.12'/>",
    ))
    .unwrap();
    assert_eq!(n.port_forwards().len(), 6);
}

#[test]
fn vnet_elements_need_nat() {
    let forward = "<vnet:port-forward proto='tcp' port='80' to='192.168.122.10'/>";
    for mode in ["route", "open"] {
        rejects(
            &vnet_net_mode(&format!("<forward mode='{mode}'/>"), forward),
            "vnet:port-forward",
            None,
            &format!(
                "port forwards are only allowed in forward mode 'nat' (<forward mode='nat'/>); \
                 this network's forward mode is '{mode}'"
            ),
        );
    }
    rejects(
        &vnet_net_mode("", forward),
        "vnet:port-forward",
        None,
        "this network is isolated (it has no <forward>)",
    );
    rejects(
        &format!(
            "<network xmlns:vnet='{VNET_NS}'><name>t</name><forward mode='bridge'/>\
             <bridge name='br0'/>{forward}</network>"
        ),
        "vnet:port-forward",
        None,
        "this network's forward mode is 'bridge'",
    );
    rejects(
        &vnet_net_mode(
            "<forward mode='route'/>",
            "<vnet:host-access enabled='no'/>",
        ),
        "vnet:host-access",
        None,
        "<vnet:host-access> is only allowed in forward mode 'nat'",
    );
    rejects(
        &vnet_net_mode("", "<vnet:host-access enabled='yes'/>"),
        "vnet:host-access",
        None,
        "this network is isolated",
    );
}

#[test]
fn vnet_namespace_is_checked() {
    let e = rejects(
        &vnet_net("<vnet:port-forward proto='tcp' port='80' to='192.168.122.10' colour='red'/>"),
        "vnet:port-forward",
        Some("colour"),
        "unknown attribute 'colour' on <vnet:port-forward> (it takes proto, address, port, \
         end, to, to-port)",
    );
    assert_eq!(e.value.as_deref(), Some("red"));
    rejects(
        &vnet_net("<vnet:host-access enabled='no' when='always'/>"),
        "vnet:host-access",
        Some("when"),
        "unknown attribute 'when' on <vnet:host-access> (it takes enabled)",
    );
    rejects(
        &vnet_net("<vnet:port-forward vnet:proto='tcp' port='80' to='192.168.122.10'/>"),
        "vnet:port-forward",
        Some("vnet:proto"),
        "vnet's namespace defines no attributes",
    );
    rejects(
        &format!("<network xmlns:vnet='{VNET_NS}' vnet:mode='fast'><name>t</name></network>"),
        "network",
        Some("vnet:mode"),
        "unknown attribute 'vnet:mode' on <network>",
    );
    rejects(
        &vnet_net("<vnet:bridge name='x'/>"),
        "vnet:bridge",
        None,
        "unknown element <vnet:bridge> in vnet's namespace (expected <vnet:port-forward>, \
         <vnet:host-access>, <vnet:host-port> or <vnet:port-security>)",
    );
    rejects(
        &vnet_net("<vnet:host-access enabled='no'/><vnet:host-access enabled='yes'/>"),
        "vnet:host-access",
        None,
        "<vnet:host-access> may appear only once in <network>",
    );
    rejects(
        &vnet_net("<vnet:host-access enabled='maybe'/>"),
        "vnet:host-access",
        Some("enabled"),
        "expected 'yes' or 'no'",
    );
    rejects(
        &vnet_net("<vnet:host-access/>"),
        "vnet:host-access",
        Some("enabled"),
        "missing attribute 'enabled'",
    );
    rejects(
        &vnet_net("<vnet:host-access enabled='no'><vnet:x/></vnet:host-access>"),
        "vnet:x",
        None,
        "<vnet:host-access> takes no child elements",
    );
    rejects(
        &vnet_net("<vnet:host-access enabled='no'>yes</vnet:host-access>"),
        "vnet:host-access",
        None,
        "unexpected text inside <vnet:host-access>",
    );
    // vnet's elements go directly under <network>: not in libvirt's elements, nor in
    // the parts kept verbatim, where vnet would not act on them.
    rejects(
        &format!(
            "<network xmlns:vnet='{VNET_NS}'><name>t</name><forward/>\
             <ip address='192.168.122.1' prefix='24'>\
             <vnet:port-forward proto='tcp' port='80' to='192.168.122.10'/></ip></network>"
        ),
        "vnet:port-forward",
        None,
        "<vnet:port-forward> belongs directly under <network>, not inside <ip>",
    );
    rejects(
        &vnet_net("<metadata><vnet:host-access enabled='no'/></metadata>"),
        "vnet:host-access",
        None,
        "<vnet:host-access> belongs directly under <network>, not inside <metadata>",
    );
    rejects(
        &vnet_net("<o:x xmlns:o='urn:o'><vnet:port-forward/></o:x>"),
        "vnet:port-forward",
        None,
        "belongs directly under <network>, not inside <o:x>",
    );
    rejects(
        &vnet_net("<metadata><o:x xmlns:o='urn:o' vnet:k='v'/></metadata>"),
        "o:x",
        Some("vnet:k"),
        "vnet's namespace defines no attributes",
    );
    rejects(
        &vnet_net("<bridge name='virbr9' vnet:stp='x'/>"),
        "bridge",
        Some("vnet:stp"),
        "vnet's namespace defines no attributes",
    );
    // Another version of the namespace is just a foreign namespace: kept.
    let n = Network::from_xml(&net(
        "<v:port-forward xmlns:v='https://vnet.dev/xmlns/network/2' port='1'/>",
    ))
    .unwrap();
    assert_eq!(n.extensions().len(), 1);
    assert!(n.port_forwards().is_empty());
}

#[test]
fn vnet_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("vnet-config-vnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fw.xml");
    std::fs::write(
        &path,
        vnet_net("<vnet:port-forward proto='tcp' port='80' to='10.0.0.5'/>"),
    )
    .unwrap();
    let e = Network::from_file(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:5: <vnet:port-forward to='10.0.0.5'>: the guest address 10.0.0.5 is outside \
             the network's IPv4 subnets (192.168.122.0/24)",
            path.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn port_forward_specs() {
    let f = pf("tcp:8080:192.168.122.10:80");
    assert_eq!(
        f,
        PortForward {
            proto: ForwardProto::Tcp,
            address: None,
            port: 8080,
            end: None,
            to: "192.168.122.10".parse().unwrap(),
            to_port: Some(80),
        }
    );
    let f = pf("udp:0.0.0.0:5000-5010:192.168.122.10");
    assert_eq!(f.proto, ForwardProto::Udp);
    assert_eq!(f.address, Some(std::net::Ipv4Addr::UNSPECIFIED.into()));
    assert_eq!((f.port, f.end, f.to_port), (5000, Some(5010), None));
    let f = pf("tcp:127.0.0.1:2222:192.168.122.5:22");
    assert_eq!(f.address, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    assert_eq!((f.port, f.to_port), (2222, Some(22)));
    let f = pf("udp:53:192.168.122.5");
    assert_eq!(
        (f.port, f.end, f.address, f.to_port),
        (53, None, None, None)
    );
    // Display is the spec form: it parses back.
    for spec in [
        "tcp:8080:192.168.122.10:80",
        "udp:0.0.0.0:5000-5010:192.168.122.10",
        "tcp:127.0.0.1:2222:192.168.122.5:22",
        "udp:53:192.168.122.5",
        "tcp:10.0.0.1:1-65535:192.168.122.5:1",
    ] {
        assert_eq!(pf(spec).to_string(), spec);
        assert_eq!(pf(&pf(spec).to_string()), pf(spec));
    }

    let bad = |spec: &str, reason: &str| {
        let e = PortForward::parse_spec(spec).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("port forward '{spec}': ")),
            "{msg}"
        );
        assert!(msg.contains(reason), "{spec}: {msg}");
    };
    bad("", "expected PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]");
    bad(
        "tcp",
        "expected PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]",
    );
    bad(
        "tcp:80",
        "expected PROTO:[ADDRESS:]PORT[-END]:GUEST[:GUEST_PORT]",
    );
    bad("tcp:1.2.3.4:80:192.168.122.5:80:9", "expected PROTO:");
    bad(
        "sctp:80:192.168.122.5",
        "PROTO 'sctp' is not a protocol (expected tcp or udp)",
    );
    bad("TCP:80:192.168.122.5", "PROTO 'TCP' is not a protocol");
    bad(
        "tcp:0.0.0.0:80",
        "missing the guest address after '0.0.0.0:'",
    );
    bad(
        "tcp:http:192.168.122.5",
        "PORT 'http' is not a port number (1 to 65535)",
    );
    bad(
        "tcp:70000:192.168.122.5",
        "PORT '70000' is not a port number",
    );
    bad("tcp:-80:192.168.122.5", "PORT '' is not a port number");
    bad("tcp:+80:192.168.122.5", "PORT '+80' is not a port number");
    bad("tcp:0:192.168.122.5", "PORT: a port is 1 to 65535, not 0");
    bad("tcp:80-:192.168.122.5", "END '' is not a port number");
    bad(
        "tcp:90-80:192.168.122.5",
        "END: the port range ends before it starts",
    );
    bad(
        "tcp:80:192.168.122",
        "GUEST '192.168.122' is not an IPv4 address",
    );
    bad(
        "tcp:80:host.lan:80",
        "GUEST 'host.lan' is not an IPv4 address",
    );
    bad(
        "tcp:1.2.3:80:192.168.122.5",
        "ADDRESS '1.2.3' is not an IPv4 address",
    );
    bad(
        "tcp:80:192.168.122.5:0",
        "GUEST_PORT: a port is 1 to 65535, not 0",
    );
    bad(
        "tcp:80:192.168.122.5:x",
        "GUEST_PORT 'x' is not a port number",
    );
    bad(
        "tcp:100-200:192.168.122.5:65500",
        "GUEST_PORT: host ports 100-200 would go to guest ports 65500-65600, past 65535",
    );
    bad(
        "tcp:255.255.255.255:80:192.168.122.5",
        "ADDRESS: the listen address must be a unicast",
    );

    // IPv6 in brackets
    let f = pf("tcp:[::1]:8080-8081:[fd00:5::10]:80");
    assert_eq!(f.address, Some("::1".parse().unwrap()));
    assert_eq!(f.to, "fd00:5::10".parse::<std::net::IpAddr>().unwrap());
    assert_eq!((f.port, f.end, f.to_port), (8080, Some(8081), Some(80)));
    assert_eq!(f.to_string(), "tcp:[::1]:8080-8081:[fd00:5::10]:80");
    assert_eq!(pf(&f.to_string()), f);
    assert_eq!(pf("udp:53:[fd00:5::10]").to.to_string(), "fd00:5::10");
    for (bad, why) in [
        ("tcp:[::1:8080:[fd00::1]", "expected PROTO"),
        (
            "tcp:8080:[fd00::zz]",
            "GUEST '[fd00::zz]' is not an IPv6 address",
        ),
        ("tcp:8080:fd00::1", "goes in brackets"),
        ("tcp:[::1]:8080:192.168.122.10", "different families"),
    ] {
        let e = PortForward::parse_spec(bad).expect_err(bad).to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }

    // What names a forward to remove: the guest part may be left out.
    let ip = |s: &str| -> Option<std::net::IpAddr> { Some(s.parse().unwrap()) };
    assert_eq!(
        PortForward::parse_key("tcp:[::]:8080").unwrap(),
        (ForwardProto::Tcp, ip("::"), 8080)
    );
    assert_eq!(
        PortForward::parse_key("tcp:8080").unwrap(),
        (ForwardProto::Tcp, None, 8080)
    );
    assert_eq!(
        PortForward::parse_key("udp:10.0.0.1:5000-5010").unwrap(),
        (ForwardProto::Udp, ip("10.0.0.1"), 5000)
    );
    assert_eq!(
        PortForward::parse_key("tcp:0.0.0.0:8080-8090:192.168.122.10:80").unwrap(),
        (ForwardProto::Tcp, ip("0.0.0.0"), 8080)
    );
    assert!(PortForward::parse_key("tcp:0:192.168.122.10")
        .unwrap_err()
        .to_string()
        .contains("PORT: a port is 1 to 65535"));
    assert!(PortForward::parse_key("icmp:1")
        .unwrap_err()
        .to_string()
        .contains("PROTO 'icmp' is not a protocol"));
    assert!(PortForward::parse_key("tcp:80-x")
        .unwrap_err()
        .to_string()
        .contains("END 'x' is not a port number"));
    assert!(PortForward::parse_key("tcp:x")
        .unwrap_err()
        .to_string()
        .contains("PORT 'x' is not a port number"));
}

#[test]
fn add_and_remove_port_forwards() {
    let mut n = Network::libvirt_default();
    n.add_port_forward(pf("tcp:8080-8090:192.168.122.10:80"))
        .unwrap();
    n.add_port_forward(pf("udp:0.0.0.0:5353:192.168.122.10"))
        .unwrap();
    n.add_port_forward(pf("tcp:127.0.0.1:2222:192.168.122.11:22"))
        .unwrap();
    assert_eq!(n.port_forwards().len(), 3);
    let out = n.to_xml();
    assert!(
        out.contains(
            "  <vnet:port-forward proto='tcp' port='8080' end='8090' to='192.168.122.10' to-port='80'/>\n\
             \x20 <vnet:port-forward proto='udp' address='0.0.0.0' port='5353' to='192.168.122.10'/>\n\
             \x20 <vnet:port-forward proto='tcp' address='127.0.0.1' port='2222' to='192.168.122.11' to-port='22'/>\n\
             </network>"
        ),
        "{out}"
    );
    assert_eq!(Network::from_xml(&out).unwrap(), n);

    // Rejections name the element, the attribute and its value; nothing changes.
    let before = n.clone();
    let check =
        |n: &mut Network, spec: &str, attr: Option<&str>, value: Option<&str>, reason: &str| {
            let e = n.add_port_forward(pf(spec)).unwrap_err();
            assert_eq!(e.element, "vnet:port-forward", "{e}");
            assert_eq!(e.attribute.as_deref(), attr, "{e}");
            assert_eq!(e.value.as_deref(), value, "{e}");
            assert!(e.reason.contains(reason), "{e}");
            assert_eq!(e.line, None);
        };
    check(
        &mut n,
        "tcp:8090-8095:192.168.122.12",
        Some("port"),
        Some("8090"),
        "overlaps the forward tcp:8080-8090:192.168.122.10:80",
    );
    check(
        &mut n,
        "tcp:10.0.0.1:8085:192.168.122.12",
        Some("port"),
        Some("8085"),
        "(0.0.0.0 listens on every address)",
    );
    check(
        &mut n,
        "udp:5353:192.168.122.12",
        Some("port"),
        Some("5353"),
        "overlaps the forward udp:0.0.0.0:5353:192.168.122.10",
    );
    check(
        &mut n,
        "tcp:0.0.0.0:2222:192.168.122.12",
        Some("port"),
        Some("2222"),
        "(0.0.0.0 listens on every address)",
    );
    check(
        &mut n,
        "tcp:9000:10.1.2.3",
        Some("to"),
        Some("10.1.2.3"),
        "outside the network's IPv4 subnets (192.168.122.0/24)",
    );
    check(
        &mut n,
        "tcp:9000:192.168.122.1",
        Some("to"),
        Some("192.168.122.1"),
        "the gateway's own address",
    );
    // Built by hand: the checks parse_spec makes are made again.
    let e = n
        .add_port_forward(PortForward {
            proto: ForwardProto::Tcp,
            address: None,
            port: 9000,
            end: Some(8000),
            to: "192.168.122.12".parse().unwrap(),
            to_port: None,
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "<vnet:port-forward end='8000'>: the port range ends before it starts (end 8000 is \
         below port 9000)"
    );
    assert_eq!(n, before);
    // Adjacent and other-address forwards are fine.
    n.add_port_forward(pf("tcp:8091:192.168.122.12")).unwrap();
    n.add_port_forward(pf("tcp:10.0.0.1:2222:192.168.122.12"))
        .unwrap();

    // Removal is by protocol, address and first port.
    let e = n
        .remove_port_forward(ForwardProto::Tcp, None, 8085)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "<vnet:port-forward port='8085'>: no tcp port forward on 0.0.0.0 starts at port 8085 \
         (the forward tcp:8080-8090:192.168.122.10:80 covers that port; name a forward by its \
         address and first port)"
    );
    assert!(n
        .remove_port_forward(ForwardProto::Udp, None, 8080)
        .is_err());
    let e = n
        .remove_port_forward(ForwardProto::Tcp, None, 2222)
        .unwrap_err();
    assert!(e.reason.contains("the forward tcp:127.0.0.1:2222:"), "{e}");
    let removed = n
        .remove_port_forward(ForwardProto::Tcp, None, 8080)
        .unwrap();
    assert_eq!(removed, pf("tcp:8080-8090:192.168.122.10:80"));
    // None and 0.0.0.0 are the same address.
    let removed = n
        .remove_port_forward(ForwardProto::Udp, None, 5353)
        .unwrap();
    assert_eq!(
        removed.address,
        Some(std::net::Ipv4Addr::UNSPECIFIED.into())
    );
    let removed = n
        .remove_port_forward(ForwardProto::Tcp, Some("127.0.0.1".parse().unwrap()), 2222)
        .unwrap();
    assert_eq!(removed.to_port, Some(22));
    assert_eq!(
        n.port_forwards()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "tcp:8091:192.168.122.12",
            "tcp:10.0.0.1:2222:192.168.122.12"
        ]
    );
    // Once the range is gone, its ports are free again.
    n.add_port_forward(pf("tcp:8080:192.168.122.13")).unwrap();

    // Not in a mode other than nat.
    let mut isolated =
        Network::from_xml(&net("<ip address='192.168.122.1' prefix='24'/>")).unwrap();
    let e = isolated
        .add_port_forward(pf("tcp:80:192.168.122.10"))
        .unwrap_err();
    assert_eq!(e.attribute, None);
    assert!(
        e.to_string().starts_with(
            "<vnet:port-forward>: port forwards are only allowed in forward mode 'nat'"
        ),
        "{e}"
    );
    assert!(isolated.port_forwards().is_empty());
}

// ---------------------------------------------------------------------------------------
// XML size and depth limits (issue #17: 45 KB of nested elements overflowed the stack)

/// Runs `f` on a thread with a small stack: the limits must be enforced without
/// recursing, so a parse that recursed once per level would overflow it (and abort the
/// test binary) long before 1 MB of nesting.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_megabyte_of_nesting_is_refused_without_overflowing_the_stack() {
    // just under the size limit, so it is the depth that is refused
    let n = (crate::MAX_XML_BYTES - 200) / 3;
    let e = on_small_stack(move || {
        let body = format!("<metadata>\n{}", "<a>".repeat(n));
        Network::from_xml(&net(&body)).unwrap_err()
    });
    assert_eq!(
        e.to_string(),
        "line 4: <a>: XML nested deeper than 64 elements"
    );
    // the same bare, without a <network> around it
    let e = on_small_stack(move || Network::from_xml(&"<a>".repeat(n)).unwrap_err());
    assert_eq!(
        e.to_string(),
        "line 1: <a>: XML nested deeper than 64 elements"
    );
}

#[test]
fn a_net_update_fragment_nested_too_deep_is_refused() {
    // the reproducer of #17: `switchctl net-update NET add ip-dhcp-host` with a <host>
    // holding 15 000 levels (45 KB, under the control socket's 64 KiB request limit)
    let e = on_small_stack(|| {
        let mut n = Network::libvirt_default();
        let fragment = format!("<host>{}", "<a>".repeat(15_000));
        let e = n
            .update(
                crate::UpdateCommand::Add,
                crate::UpdateSection::IpDhcpHost,
                None,
                &fragment,
            )
            .unwrap_err();
        assert_eq!(n, Network::libvirt_default(), "unchanged");
        e
    });
    assert_eq!(
        e.to_string(),
        "line 1: <a>: XML nested deeper than 64 elements"
    );
}

#[test]
fn nesting_up_to_the_limit_loads() {
    // <network> and <metadata> are levels 1 and 2; 62 more kept verbatim make 64
    let kept = format!("{}{}", "<x:a>".repeat(62), "</x:a>".repeat(62));
    let xml =
        format!("<network xmlns:x='urn:x'><name>t</name><metadata>{kept}</metadata></network>");
    let n = Network::from_xml(&xml).unwrap();
    assert_eq!(Network::from_xml(&n.to_xml()).unwrap(), n);
    let deeper = xml
        .replace("<metadata>", "<metadata><x:b>")
        .replace("</metadata>", "</x:b></metadata>");
    let e = Network::from_xml(&deeper).unwrap_err();
    assert_eq!(e.element, "x:a");
    assert!(
        e.reason.contains("XML nested deeper than 64 elements"),
        "{e}"
    );
}

#[test]
fn nesting_inside_comments_cdata_and_attributes_is_not_counted() {
    let deep = "<a>".repeat(10_000);
    let xml = format!(
        "<?xml version='1.0'?>\n<!-- {deep} -->\n<network xmlns:x='urn:x'>\n<name>t</name>\n\
         <metadata><x:m v='{}' w=\"/>'>\"><![CDATA[{deep}]]><?pi {deep}?><!--{deep}--></x:m>\
         </metadata>\n</network>",
        "&lt;a&gt;".repeat(10_000)
    );
    let n = Network::from_xml(&xml).unwrap();
    assert_eq!(Network::from_xml(&n.to_xml()).unwrap(), n);
}

#[test]
fn a_document_over_the_size_limit_is_refused() {
    let pad = " ".repeat(crate::MAX_XML_BYTES);
    let e = Network::from_xml(&net(&pad)).unwrap_err();
    assert_eq!(e.line, None);
    assert_eq!(e.element, "");
    assert!(
        e.to_string()
            .starts_with("XML document larger than 1048576 bytes ("),
        "{e}"
    );
    // a network of 1 MiB, with thousands of hosts, is within it
    let hosts: String = (0..8000u32)
        .map(|i| {
            format!(
                "<host mac='52:54:00:00:{:02x}:{:02x}' name='h{i}' ip='10.0.{}.{}'/>\n",
                i >> 8,
                i & 0xff,
                (i >> 8) + 1,
                i & 0xff
            )
        })
        .collect();
    let xml = net(&format!(
        "<ip address='10.255.255.254' prefix='8'><dhcp>{hosts}</dhcp></ip>"
    ));
    assert!(xml.len() < crate::MAX_XML_BYTES);
    assert_eq!(
        Network::from_xml(&xml).unwrap().ips()[0]
            .dhcp
            .as_ref()
            .unwrap()
            .hosts
            .len(),
        8000
    );
}

#[test]
fn from_file_refuses_a_file_over_the_size_limit() {
    let dir = std::env::temp_dir().join(format!("vnet-config-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.xml");
    std::fs::write(&path, net(&" ".repeat(2 * crate::MAX_XML_BYTES))).unwrap();
    let e = Network::from_file(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: XML document larger than 1048576 bytes", path.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// DHCP ranges: network and broadcast addresses, overlaps (issue #17)

#[test]
fn dhcp_ranges_leave_out_the_network_and_broadcast_addresses() {
    let e = rejects(
        &with_ip("<dhcp><range start='192.168.50.0' end='192.168.50.100'/></dhcp>"),
        "range",
        Some("start"),
        "DHCP range start is the network address of 192.168.50.0/24",
    );
    assert_eq!(
        e.to_string(),
        "line 3: <range start='192.168.50.0'>: DHCP range start is the network address of \
         192.168.50.0/24"
    );
    rejects(
        &with_ip("<dhcp><range start='192.168.50.2' end='192.168.50.255'/></dhcp>"),
        "range",
        Some("end"),
        "DHCP range end is the broadcast address of 192.168.50.0/24",
    );
    rejects(
        &net("<ip address='10.1.0.1' netmask='255.255.0.0'><dhcp><range start='10.1.200.0' end='10.1.255.255'/></dhcp></ip>"),
        "range",
        Some("end"),
        "DHCP range end is the broadcast address of 10.1.0.0/16",
    );
    // the addresses next to them are fine, and so is .0 or .255 inside a larger subnet
    Network::from_xml(&with_ip(
        "<dhcp><range start='192.168.50.1' end='192.168.50.254'/></dhcp>",
    ))
    .unwrap();
    Network::from_xml(&net(
        "<ip address='10.1.0.1' prefix='16'><dhcp><range start='10.1.1.0' end='10.1.2.255'/></dhcp></ip>",
    ))
    .unwrap();
    // a /31 has neither (RFC 3021); IPv6 has no broadcast address
    Network::from_xml(&net(
        "<ip address='10.9.0.0' prefix='31'><dhcp><range start='10.9.0.1' end='10.9.0.1'/></dhcp></ip>",
    ))
    .unwrap();
    Network::from_xml(&net(
        "<ip family='ipv6' address='fd00::1' prefix='120'><dhcp><range start='fd00::10' end='fd00::ff'/></dhcp></ip>",
    ))
    .unwrap();
}

#[test]
fn dhcp_ranges_may_not_overlap() {
    let e = rejects(
        &with_ip(
            "<dhcp>\n<range start='192.168.50.10' end='192.168.50.20'/>\n\
             <range start='192.168.50.20' end='192.168.50.30'/></dhcp>",
        ),
        "range",
        None,
        "the DHCP range 192.168.50.20 to 192.168.50.30 overlaps the range 192.168.50.10 to \
         192.168.50.20",
    );
    assert_eq!(e.line, Some(5));
    // one inside another, either way round
    for (a, b) in [("10", "99"), ("40", "50")] {
        let (c, d) = if a == "10" {
            ("40", "50")
        } else {
            ("10", "99")
        };
        rejects(
            &with_ip(&format!(
                "<dhcp><range start='192.168.50.{a}' end='192.168.50.{b}'/>\
                 <range start='192.168.50.{c}' end='192.168.50.{d}'/></dhcp>"
            )),
            "range",
            None,
            "overlaps the range",
        );
    }
    rejects(
        &with_ip(
            "<dhcp><range start='192.168.50.10' end='192.168.50.20'/>\
             <range start='192.168.50.10' end='192.168.50.20'/></dhcp>",
        ),
        "range",
        None,
        "this DHCP range is listed twice",
    );
    rejects(
        &net(
            "<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::ff'/>\
             <range start='fd00::f0' end='fd00::1ff'/></dhcp></ip>",
        ),
        "range",
        None,
        "the DHCP range fd00::f0 to fd00::1ff overlaps the range fd00::10 to fd00::ff",
    );
    // adjacent ranges do not overlap
    let n = Network::from_xml(&with_ip(
        "<dhcp><range start='192.168.50.10' end='192.168.50.20'/>\
         <range start='192.168.50.21' end='192.168.50.30'/></dhcp>",
    ))
    .unwrap();
    assert_eq!(n.ips()[0].dhcp.as_ref().unwrap().ranges.len(), 2);
}

#[test]
fn net_update_checks_a_new_range_like_the_loader() {
    use crate::{UpdateCommand as C, UpdateSection as S};
    let mut n = Network::libvirt_default(); // .2 to .254
    let e = n
        .update(
            C::Add,
            S::IpDhcpRange,
            None,
            "<range start='192.168.122.100' end='192.168.122.120'/>",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1: <range>: the DHCP range 192.168.122.100 to 192.168.122.120 overlaps the range \
         192.168.122.2 to 192.168.122.254"
    );
    let e = n
        .update(
            C::Add,
            S::IpDhcpRange,
            None,
            "<range start='192.168.122.0' end='192.168.122.1'/>",
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("<range start='192.168.122.0'>: DHCP range start is the network address"),
        "{e}"
    );
    assert_eq!(n, Network::libvirt_default(), "unchanged");
    // after the big range is gone, a smaller one fits
    n.update(
        C::Delete,
        S::IpDhcpRange,
        None,
        "<range start='192.168.122.2' end='192.168.122.254'/>",
    )
    .unwrap();
    n.update(
        C::Add,
        S::IpDhcpRange,
        None,
        "<range start='192.168.122.100' end='192.168.122.120'/>",
    )
    .unwrap();
}
