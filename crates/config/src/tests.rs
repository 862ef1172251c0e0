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
