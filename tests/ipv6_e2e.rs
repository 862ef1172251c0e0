//! IPv6 on the segment, with kernel guests in namespaces: SLAAC from the gateway's router
//! advertisements (prefix, default route, DNS server and search list), neighbor
//! discovery and ping to the gateway, guest-to-guest IPv6, DNS over IPv6 (AAAA, PTR),
//! and "no route" for what the gateway cannot route.

mod common;

use std::time::Duration;

use common::clients::{self, write_script};
use common::{wan, Net};
use vnet_testkit::{wait_for, Netns};

const XML: &str = "<network>
  <name>v6</name>
  <forward mode='nat'/>
  <domain name='v6test'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:77::1' prefix='64'/>
  <dns><host ip='fd00:77::99'><hostname>srv6</hostname></host></dns>
</network>";

/// A guest on a TAP port with IPv6 on its `eth0` (test namespaces start with it off).
fn v6_guest(net: &Net, prefix: &str, mac: &str) -> Netns {
    let g = net.add_bare_guest(prefix, mac);
    enable_v6(&g);
    g
}

/// Turns IPv6 on in `g` (`lo`, `eth0`).
fn enable_v6(g: &Netns) {
    for key in ["lo", "eth0"] {
        let k = format!("net.ipv6.conf.{key}.disable_ipv6=0");
        g.run_ok("sysctl", &["-qw", &k]);
    }
}

/// The guest's global IPv6 address in `prefix` on eth0 once SLAAC made it (DAD done).
fn slaac_address(g: &Netns, prefix: &str) -> Option<String> {
    let out = g.run_ok(
        "ip",
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
    );
    if out.contains("tentative") {
        return None;
    }
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .filter(|a| a.starts_with(prefix))
        .map(str::to_owned)
}

#[test]
fn guests_configure_by_slaac_and_reach_the_gateway_and_each_other() {
    let net = Net::start_with(Some(XML));
    let vm1 = v6_guest(&net, "v6a", "52:54:00:60:00:01");
    let vm2 = v6_guest(&net, "v6b", "52:54:00:60:00:02");
    let mut addrs = Vec::new();
    for g in [&vm1, &vm2] {
        let mut addr = None;
        let ok = wait_for(Duration::from_secs(20), || {
            addr = slaac_address(g, "fd00:77::");
            addr.is_some()
        });
        assert!(
            ok,
            "no SLAAC address: {}\n{}",
            g.run_ok("ip", &["-6", "addr"]),
            net.log()
        );
        addrs.push(addr.unwrap_or_default());
    }
    // EUI-64 from the MAC
    assert_eq!(addrs[0], "fd00:77::5054:ff:fe60:1");
    let route = vm1.run_ok("ip", &["-6", "route", "show", "default"]);
    let gw_ll = "fe80::5054:ff:fe";
    assert!(
        route.contains("proto ra") && route.contains(&format!("via {gw_ll}")),
        "default route: {route}"
    );

    // the gateway: its global address and its link-local, by neighbor discovery
    vm1.run_ok("ping", &["-6", "-c", "2", "-W", "2", "fd00:77::1"]);
    let ll = route
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    vm1.run_ok("ping", &["-6", "-c", "1", "-W", "2", &format!("{ll}%eth0")]);
    let neigh = vm1.run_ok("ip", &["-6", "neigh", "show", "fd00:77::1"]);
    assert!(
        neigh.contains("router"),
        "the gateway says it is a router: {neigh}"
    );

    // guest to guest
    vm1.run_ok("ping", &["-6", "-c", "2", "-W", "2", &addrs[1]]);

    // the host, through its port with the gateway's addresses (as on libvirt's virbr0)
    let host_ok = wait_for(Duration::from_secs(10), || {
        net.host
            .run("ping", &["-6", "-c", "1", "-W", "1", &addrs[0]])
            .status
            .success()
    });
    let host_addrs = net.host.run_ok("ip", &["-6", "addr"]);
    assert!(
        host_ok,
        "the host cannot reach a guest over IPv6: {host_addrs}\n{}",
        net.log()
    );
    assert!(!host_addrs.contains("dadfailed"), "{host_addrs}");

    // the DNS server and search list, as a router-discovery client reads them
    let rd = vm2.run_ok("rdisc6", &["-1", "-w", "2000", "eth0"]);
    assert!(rd.contains("fd00:77::1"), "RDNSS: {rd}");
    assert!(rd.contains("v6test"), "DNSSL: {rd}");
    assert!(rd.contains("fd00:77::/64"), "prefix: {rd}");

    // DNS over IPv6 at the advertised server: AAAA and the reverse name
    let dig = |args: &[&str]| {
        let mut a = vec!["@fd00:77::1", "+short", "+time=2", "+tries=1"];
        a.extend_from_slice(args);
        vm1.run_ok("dig", &a).trim().to_owned()
    };
    assert_eq!(dig(&["AAAA", "srv6.v6test"]), "fd00:77::99");
    assert_eq!(dig(&["-x", "fd00:77::99"]), "srv6.v6test.");

    // what the gateway counted, as `switchctl stats` shows it
    let st = net.ctl_json(&["stats", &net.name]);
    let v6 = &st["ipv6"];
    for k in [
        "router_solicitations",
        "router_adverts",
        "neighbor_solicitations",
        "echo_replies",
    ] {
        assert!(v6[k].as_u64().unwrap_or(0) > 0, "{k}: {v6}");
    }

    // off the segment: told at once, not left to time out
    let out = vm1.run("ping", &["-6", "-c", "1", "-W", "2", "2001:db8::1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No route"), "ping off the segment: {text}");
}

#[test]
fn an_isolated_network_advertises_its_prefix_but_no_default_route() {
    let xml = "<network><name>v6i</name>
      <ip address='10.78.0.1' netmask='255.255.255.0'/>
      <ip family='ipv6' address='fd00:78::1' prefix='64'/></network>";
    let net = Net::start_with(Some(xml));
    let vm = v6_guest(&net, "v6i", "52:54:00:60:00:03");
    let ok = wait_for(Duration::from_secs(20), || {
        slaac_address(&vm, "fd00:78::").is_some()
    });
    assert!(ok, "no SLAAC address: {}", net.log());
    let route = vm.run_ok("ip", &["-6", "route", "show", "default"]);
    assert!(
        route.trim().is_empty(),
        "a default route on an isolated network: {route}"
    );
    vm.run_ok("ping", &["-6", "-c", "1", "-W", "2", "fd00:78::1"]);
}

/// A router advertisement for 2001:db8:bad::/64 (SLAAC) from `mac`'s link-local, as a
/// rogue router (a guest running radvd, a crafted packet) sends it.
fn rogue_ra(mac: [u8; 6]) -> Vec<u8> {
    use etherparse::icmpv6::RouterAdvertisementHeader;
    use etherparse::{Icmpv6Type, PacketBuilder};
    let ll = vnet_switch::MacAddr(mac).ipv6_link_local().octets();
    let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut p = vec![0u8; 8];
    p.extend_from_slice(&[3, 4, 64, 0xc0]);
    p.extend_from_slice(&3600u32.to_be_bytes());
    p.extend_from_slice(&3600u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let ra = Icmpv6Type::RouterAdvertisement(RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: false,
        other_config: false,
        router_lifetime: 1800,
    });
    let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(ll, all_nodes, 255)
        .icmpv6(ra);
    let mut f = Vec::new();
    b.write(&mut f, &p).expect("build the RA");
    f
}

/// Sends `frame` out of the guest's eth0 as it is (an AF_PACKET socket).
fn send_raw(g: &Netns, frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let py = "import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
              s.bind(('eth0',0))\nfor _ in range(3): s.send(bytes.fromhex(sys.argv[1]))";
    g.run_ok("python3", &["-c", py, &hex]);
}

#[test]
fn ra_guard_drops_a_guests_router_advertisements_on_a_protected_port() {
    let net = Net::start_with(Some(XML));
    let victim = v6_guest(&net, "v6v", "52:54:00:60:00:10");
    let ok = wait_for(Duration::from_secs(20), || {
        slaac_address(&victim, "fd00:77::").is_some()
    });
    assert!(ok, "no SLAAC address: {}", net.log());
    // the rogue router on a protected port: its advertisement never reaches the victim
    let rogue = Netns::new("v6r");
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--netns",
        rogue.name(),
        "--ifname",
        "eth0",
        "--mac",
        "52:54:00:60:00:11",
        "--name",
        "rogue",
        "--secure",
    ]);
    rogue.run_ok("ip", &["link", "set", "eth0", "up"]);
    send_raw(&rogue, &rogue_ra([0x52, 0x54, 0, 0x60, 0, 0x11]));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        slaac_address(&victim, "2001:db8:bad:").is_none(),
        "the rogue prefix got through"
    );
    let ports = net.ctl_json(&["port-list", &net.name]);
    let drops = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "rogue"))
        .map(|p| p["counters"]["drops"]["rogue-router"].as_u64().unwrap_or(0));
    assert_eq!(drops, Some(3), "{ports}");
    // the same advertisement from an unprotected port is taken (what RA guard prevents)
    let open = Netns::new("v6o");
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--netns",
        open.name(),
        "--ifname",
        "eth0",
        "--mac",
        "52:54:00:60:00:12",
        "--name",
        "open",
    ]);
    open.run_ok("ip", &["link", "set", "eth0", "up"]);
    send_raw(&open, &rogue_ra([0x52, 0x54, 0, 0x60, 0, 0x12]));
    let taken = wait_for(Duration::from_secs(10), || {
        slaac_address(&victim, "2001:db8:bad:").is_some()
    });
    assert!(
        taken,
        "an unprotected port's advertisement should reach the victim"
    );
}

const DHCP6_XML: &str = "<network>
  <name>v6d</name>
  <forward mode='nat'/>
  <domain name='v6test'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
  <ip family='ipv6' address='fd00:79::1' prefix='64'>
    <dhcp>
      <range start='fd00:79::1:10' end='fd00:79::1:ff'/>
      <host id='0:3:0:1:52:54:0:60:0:22' name='resv' ip='fd00:79::1:99'/>
    </dhcp>
  </ip>
</network>";

/// `dhclient -6` in `g` once, after its link-local address is ready (dhclient cannot
/// bind to a tentative one); what its script saw (`ip6=… dns6=… search=…`).
fn dhclient6(net: &Net, g: &Netns, tag: &str) -> String {
    dhclient6_named(net, g, tag, None)
}

/// [`dhclient6`], sending a Client FQDN option with host name `name`.
fn dhclient6_named(net: &Net, g: &Netns, tag: &str, name: Option<&str>) -> String {
    let ready = wait_for(Duration::from_secs(10), || {
        let ll = g.run_ok(
            "ip",
            &["-6", "addr", "show", "dev", "eth0", "scope", "link"],
        );
        ll.contains("inet6") && !ll.contains("tentative")
    });
    assert!(ready, "no link-local address");
    let dir = net.dir.path();
    let out = dir.join(format!("dhclient6-{tag}.env"));
    let script = write_script(
        dir,
        &format!("dhclient6-{tag}.sh"),
        &format!(
            "#!/bin/sh\ncase \"$reason\" in\n  BOUND6|RENEW6|REBIND6)\n    \
             ip -6 addr add \"$new_ip6_address/$new_ip6_prefixlen\" dev \"$interface\" nodad\n    \
             echo \"ip6=$new_ip6_address dns6=$new_dhcp6_name_servers search=$new_dhcp6_domain_search reason=$reason\" > {}\n    ;;\nesac\nexit 0\n",
            out.display()
        ),
    );
    let lf = dir.join(format!("dhclient6-{tag}.leases"));
    let pf = dir.join(format!("dhclient6-{tag}.pid"));
    let cf = dir.join(format!("dhclient6-{tag}.conf"));
    let conf = name.map_or_else(String::new, |n| format!("send fqdn.fqdn \"{n}\";\n"));
    std::fs::write(&cf, conf).expect("dhclient.conf");
    let (s, l, p, c) = (
        script.display().to_string(),
        lf.display().to_string(),
        pf.display().to_string(),
        cf.display().to_string(),
    );
    let _ = g.run(
        "timeout",
        &[
            "20", "dhclient", "-6", "-1", "-cf", &c, "-sf", &s, "-lf", &l, "-pf", &p, "eth0",
        ],
    );
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    std::fs::read_to_string(&out).unwrap_or_default()
}

#[test]
fn dhcpv6_hands_out_addresses_from_the_range_with_the_dns_server() {
    let mut net = Net::start_with(Some(DHCP6_XML));
    let vm = v6_guest(&net, "v6d", "52:54:00:60:00:20");
    // the advertisements say "managed": no SLAAC address in the prefix
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        slaac_address(&vm, "fd00:79::5054").is_none(),
        "SLAAC on a managed prefix"
    );
    let got = dhclient6(&net, &vm, "a");
    assert!(
        got.contains("ip6=fd00:79::1:"),
        "dhclient -6: {got:?}\n{}",
        net.log()
    );
    assert!(got.contains("dns6=fd00:79::1"), "{got}");
    assert!(got.contains("v6test"), "{got}");
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    assert!(
        leases.contains("ipv6") && leases.contains("fd00:79::1:"),
        "{leases}"
    );
    // renewing (a second run with the same lease file) keeps the address
    let again = dhclient6(&net, &vm, "a");
    let addr = |s: &str| s.split_whitespace().next().map(str::to_owned);
    assert_eq!(addr(&again), addr(&got), "{again}");
    let ip = got
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("ip6="))
        .unwrap_or_default()
        .to_owned();
    vm.run_ok("ping", &["-6", "-c", "1", "-W", "2", "fd00:79::1"]);
    assert!(vm.run_ok("ip", &["-6", "addr"]).contains(&ip));
    assert!(
        net.log().contains(&format!("DHCPREPLY({}) {ip}", net.name)),
        "{}",
        net.log()
    );

    // dhcpcd starts DHCPv6 because the advertisements say "managed"
    let vm2 = v6_guest(&net, "v6e", "52:54:00:60:00:21");
    let out = net.dir.path().join("dhcpcd6.env");
    let script = write_script(
        net.dir.path(),
        "dhcpcd6.sh",
        &format!(
            "#!/bin/sh\n[ -n \"$new_dhcp6_ia_na1_ia_addr1\" ] && echo \"ip6=$new_dhcp6_ia_na1_ia_addr1 dns6=$new_dhcp6_name_servers reason=$reason\" > {}\nexit 0\n",
            out.display()
        ),
    );
    let _ = vm2.run(
        "timeout",
        &[
            "30",
            "dhcpcd",
            "-6",
            "-1",
            "-B",
            "-t",
            "20",
            "-c",
            &script.to_string_lossy(),
            "eth0",
        ],
    );
    let _ = vm2.run("dhcpcd", &["-x", "eth0"]);
    let got2 = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        got2.contains("ip6=fd00:79::1:"),
        "dhcpcd -6: {got2:?}\n{}",
        net.log()
    );
    assert!(got2.contains("dns6=fd00:79::1"), "{got2}");
    assert_ne!(
        got2.split_whitespace().next(),
        got.split_whitespace().next(),
        "one address each"
    );

    // a client whose DUID a <host id> names gets the reserved address, and its name
    // resolves to it (AAAA and PTR)
    let vm3 = v6_guest(&net, "v6f", "52:54:00:60:00:22");
    // DUID-LL of 52:54:00:60:00:22, as dhclient reads it from its lease file
    let lf = net.dir.path().join("dhclient6-r.leases");
    std::fs::write(
        &lf,
        "default-duid \"\\000\\003\\000\\001RT\\000`\\000\\042\";\n",
    )
    .expect("duid");
    let got3 = dhclient6(&net, &vm3, "r");
    assert!(
        got3.contains("ip6=fd00:79::1:99 "),
        "reserved: {got3:?}\n{}",
        net.log()
    );
    let dig = |args: &[&str]| {
        let mut a = vec!["@fd00:79::1", "+short", "+time=2", "+tries=1"];
        a.extend_from_slice(args);
        vm3.run_ok("dig", &a).trim().to_owned()
    };
    assert_eq!(dig(&["AAAA", "resv.v6test"]), "fd00:79::1:99");
    assert_eq!(dig(&["-x", "fd00:79::1:99"]), "resv.v6test.");
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    assert!(
        leases.contains("resv") && leases.contains("52:54:00:60:00:22"),
        "{leases}"
    );

    // kill -9 and a restart keep the leases: listed at once, and a guest whose
    // (persistent) TAP the restart re-attached renews to the same address
    let vmp = Netns::new("v6p");
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--netns",
        vmp.name(),
        "--ifname",
        "eth0",
        "--mac",
        "52:54:00:60:00:23",
        "--persistent",
    ]);
    vmp.run_ok("ip", &["link", "set", "eth0", "up"]);
    enable_v6(&vmp);
    let before = dhclient6(&net, &vmp, "p");
    assert!(before.contains("ip6=fd00:79::1:"), "{before}");
    net.stop(true);
    net.launch();
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    assert!(
        leases.contains(&ip),
        "after kill -9: {leases}\n{}",
        net.log()
    );
    let after = dhclient6(&net, &vmp, "p");
    assert_eq!(addr(&after), addr(&before), "{after}\n{}", net.log());
    let _ = vmp.run("ip", &["link", "del", "eth0"]);
}

/// libvirt's IPv6-only network (its test suite's `dhcp6-network`, on a prefix of our
/// own): no IPv4 anywhere.
const V6_ONLY_XML: &str = "<network>
  <name>v6o</name>
  <forward mode='nat'/>
  <domain name='v6only'/>
  <ip family='ipv6' address='fd00:7a::1' prefix='64'>
    <dhcp>
      <range start='fd00:7a::1:10' end='fd00:7a::1:ff'/>
      <host name='paul' ip='fd00:7a::1:21'/>
    </dhcp>
  </ip>
</network>";

#[test]
fn an_ipv6_only_network_leases_by_name_and_resolves_over_udp_and_tcp() {
    let net = Net::start_with(Some(V6_ONLY_XML));
    let info = net.ctl_json(&["net-info", &net.name]).to_string();
    // a client naming itself "paul" gets paul's reservation
    let vm1 = v6_guest(&net, "v6o", "52:54:00:60:00:31");
    let got = dhclient6_named(&net, &vm1, "o1", Some("paul"));
    assert!(
        got.contains("ip6=fd00:7a::1:21 "),
        "by name: {got:?}\n{info}\n{}",
        net.log()
    );
    assert!(got.contains("dns6=fd00:7a::1"), "{got}");
    // another names itself "gamma": an address from the range, and the name in DNS
    let vm2 = v6_guest(&net, "v6q", "52:54:00:60:00:32");
    let got2 = dhclient6_named(&net, &vm2, "o2", Some("gamma"));
    let ip2 = got2
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("ip6="))
        .unwrap_or_default()
        .to_owned();
    assert!(ip2.starts_with("fd00:7a::1:"), "{got2:?}\n{}", net.log());
    assert_ne!(ip2, "fd00:7a::1:21");
    vm1.run_ok("ping", &["-6", "-c", "1", "-W", "2", "fd00:7a::1"]);
    vm1.run_ok("ping", &["-6", "-c", "1", "-W", "2", &ip2]);
    let dig = |args: &[&str]| {
        let mut a = vec!["@fd00:7a::1", "+short", "+time=2", "+tries=1"];
        a.extend_from_slice(args);
        vm1.run_ok("dig", &a).trim().to_owned()
    };
    assert_eq!(dig(&["AAAA", "gamma.v6only"]), ip2, "{}", net.log());
    assert_eq!(dig(&["+tcp", "AAAA", "gamma.v6only"]), ip2, "DNS over TCP");
    assert_eq!(dig(&["+tcp", "-x", &ip2]), "gamma.v6only.");
    assert_eq!(dig(&["AAAA", "paul.v6only"]), "fd00:7a::1:21");
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    assert!(
        leases.contains("gamma") && leases.contains("paul"),
        "{leases}"
    );
}

/// NAT66: `<nat ipv6='yes'/>` with one SLAAC prefix and one DHCPv6 prefix.
const NAT6_XML: &str = "<network>
  <name>n6</name>
  <forward mode='nat'><nat ipv6='yes'/></forward>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
  <ip family='ipv6' address='fd00:88::1' prefix='64'/>
  <ip family='ipv6' address='fd00:89::1' prefix='64'>
    <dhcp><range start='fd00:89::100' end='fd00:89::1ff'/></dhcp>
  </ip>
</network>";

/// The wan's IPv6 address and the host's (switchd's namespace) on the same link.
const WAN6: &str = "2001:db8:98::2";
const UPLINK6: &str = "2001:db8:98::1";

fn sysctl(ns: &Netns, kv: &str) {
    ns.run_ok("sysctl", &["-qw", kv]);
}

/// The wan namespace on a veth from switchd's namespace, with IPv6 on both ends; the
/// host namespace allows ping sockets (for ICMPv6 echo through NAT).
fn wan6(net: &Net) -> (Netns, vnet_testkit::Veth) {
    for kv in [
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
        "net.ipv4.ping_group_range=0 2147483647",
    ] {
        sysctl(&net.host, kv);
    }
    let (wan, veth) = net.wan("w6", "10.98.0.1", "10.98.0.2");
    for kv in [
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
    ] {
        sysctl(&wan, kv);
    }
    sysctl(
        &net.host,
        &format!("net.ipv6.conf.{}.disable_ipv6=0", veth.a()),
    );
    sysctl(&wan, &format!("net.ipv6.conf.{}.disable_ipv6=0", veth.b()));
    net.host.run_ok(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{UPLINK6}/64"),
            "dev",
            veth.a(),
            "nodad",
        ],
    );
    wan.run_ok(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{WAN6}/64"),
            "dev",
            veth.b(),
            "nodad",
        ],
    );
    (wan, veth)
}

#[test]
fn nat66_carries_tcp_udp_and_icmpv6_to_the_wan_from_the_hosts_address() {
    let net = Net::start_with(Some(NAT6_XML));
    let (wan, _veth) = wan6(&net);
    let vm = v6_guest(&net, "n6a", "52:54:00:66:00:01");
    assert!(
        wait_for(Duration::from_secs(10), || slaac_address(&vm, "fd00:88::")
            .is_some()),
        "no SLAAC address: {}",
        vm.run_ok("ip", &["-6", "addr"])
    );
    let route = vm.run_ok("ip", &["-6", "route", "show", "default"]);
    assert!(route.contains("via fe80::"), "{route}");

    // a 100 MB file over HTTP, checked by sha256; the server sees the host's address
    let (got, want, err, served) = wan::big_download(net.dir.path(), &vm, &wan, WAN6);
    assert_eq!(
        got,
        want,
        "download over NAT66: {err}\n{}\n{}",
        net.log(),
        net.ctl_json(&["nat-flows", &net.name]),
    );
    assert!(served.contains(UPLINK6), "{served}");

    // iperf3 -6 both ways; UDP: the wan sees the host's address
    wan::iperf_both_ways(&vm, &wan, WAN6, 5201);
    let _echo = wan::udp_echo(&wan, WAN6, 7007);
    assert_eq!(
        wan::udp_ask(&vm, WAN6, 7007, None, "hello"),
        format!("HELLO{UPLINK6}")
    );

    // ping -6 a wan host
    let ping = vm.run("ping", &["-6", "-c", "2", "-W", "2", WAN6]);
    assert!(
        ping.status.success(),
        "ping -6 through NAT66: {}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        net.log()
    );

    // a refused port: "connection refused" at once
    let t = std::time::Instant::now();
    let out = wan::py(
        &vm,
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.settimeout(10)\n\
             try:\n    s.connect(('{WAN6}',9))\nexcept ConnectionRefusedError:\n    print('refused')\n"
        ),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
    assert!(t.elapsed() < Duration::from_secs(5));

    // 500 concurrent IPv6 connections
    assert_eq!(
        wan::concurrent_echo(&vm, &wan, WAN6, 7100, 500),
        "500",
        "{}",
        net.log()
    );
    let flows = net.ctl_json(&["nat-flows", &net.name]).to_string();
    assert!(flows.contains(WAN6), "{flows}");

    // a guest configured by DHCPv6 (the managed prefix) goes out too
    let vm2 = v6_guest(&net, "n6b", "52:54:00:66:00:02");
    let got = dhclient6(&net, &vm2, "n6");
    assert!(got.contains("ip6=fd00:89::1"), "{got}\n{}", net.log());
    let ip2 = got
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("ip6="))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        wan::udp_ask(&vm2, WAN6, 7007, Some(&ip2), "dhcp"),
        format!("DHCP{UPLINK6}")
    );
}

#[test]
fn ipv6_port_forwards_reach_a_guest_from_the_wan_with_the_clients_address() {
    let net = Net::start_with(Some(NAT6_XML));
    let (wan, _veth) = wan6(&net);
    let vm = v6_guest(&net, "n6f", "52:54:00:66:00:03");
    assert!(
        wait_for(Duration::from_secs(10), || slaac_address(&vm, "fd00:88::")
            .is_some()),
        "no SLAAC address"
    );
    let guest = slaac_address(&vm, "fd00:88::").unwrap_or_default();
    // the guest's servers tell each client the address they saw
    let _tcp = vm.spawn(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('::',80))\ns.listen(16)\n\
             while True:\n    c,a=s.accept()\n    c.sendall(('you are '+a[0]).encode())\n    c.close()\n",
        ],
    );
    let _udp = vm.spawn(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.bind(('::',5001))\n\
             while True:\n    d,a=s.recvfrom(2048)\n    s.sendto(d+b' from '+a[0].encode(),a)\n",
        ],
    );
    net.ctl_json(&[
        "port-forward-add",
        &net.name,
        &format!("tcp:8080:[{guest}]:80"),
    ]);
    net.ctl_json(&[
        "port-forward-add",
        &net.name,
        &format!("udp:[{UPLINK6}]:5000:[{guest}]:5001"),
    ]);
    let list = net.ctl_json(&["port-forward-list", &net.name]).to_string();
    assert!(list.contains(&guest), "{list}");
    let ask = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.settimeout(3)\n\
         try:\n    s.connect(('{UPLINK6}',8080))\n    print(s.recv(100).decode())\n\
         except OSError as e:\n    print('error',e)\n"
    );
    let want = format!("you are {WAN6}");
    assert!(
        wait_for(Duration::from_secs(10), || String::from_utf8_lossy(
            &wan::py(&wan, &ask).stdout
        )
        .trim()
            == want),
        "TCP through the IPv6 forward: {}\n{}",
        String::from_utf8_lossy(&wan::py(&wan, &ask).stdout),
        net.log()
    );
    let udp = format!(
        "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
         s.sendto(b'ping',('{UPLINK6}',5000))\nprint(s.recvfrom(100)[0].decode())"
    );
    let want = format!("ping from {WAN6}");
    assert!(
        wait_for(Duration::from_secs(10), || String::from_utf8_lossy(
            &wan::py(&wan, &udp).stdout
        )
        .trim()
            == want),
        "UDP through the IPv6 forward: {}",
        net.log()
    );
    // a live delete closes the port
    net.ctl_json(&["port-forward-del", &net.name, "tcp:[::]:8080"]);
    let out = String::from_utf8_lossy(&wan::py(&wan, &ask).stdout).to_string();
    assert!(out.contains("error"), "{out}");
}

#[test]
fn the_gateways_ipv6_address_reaches_the_hosts_v6_loopback() {
    // without a host port (with one, the host kernel itself answers the gateway address)
    let net = Net::start_with(Some(
        "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>lo6</name>\
         <forward mode='nat'><nat ipv6='yes'/></forward>\
         <ip address='192.168.122.1' netmask='255.255.255.0'/>\
         <ip family='ipv6' address='fd00:8a::1' prefix='64'/>\
         <vnet:host-port enabled='no'/></network>",
    ));
    sysctl(&net.host, "net.ipv6.conf.lo.disable_ipv6=0");
    let vm = v6_guest(&net, "n6h", "52:54:00:66:00:04");
    assert!(
        wait_for(Duration::from_secs(10), || slaac_address(&vm, "fd00:8a::")
            .is_some()),
        "no SLAAC address"
    );
    let _svc = net.host.spawn(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('::1',8022))\ns.listen()\n\
             while True:\n    c,a=s.accept()\n    c.sendall(b'host says hi to '+a[0].encode())\n    c.close()\n",
        ],
    );
    let ask = |to: &str| {
        let code = format!(
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.settimeout(3)\n\
             try:\n    s.connect(('{to}',8022))\n    print(s.recv(100).decode())\n\
             except OSError as e:\n    print('error',e)\n"
        );
        String::from_utf8_lossy(&wan::py(&vm, &code).stdout)
            .trim()
            .to_owned()
    };
    assert!(
        wait_for(Duration::from_secs(5), || ask("fd00:8a::1")
            == "host says hi to ::1"),
        "{}\n{}",
        ask("fd00:8a::1"),
        net.log()
    );
}

#[test]
fn route_mode_routes_ipv6_both_ways_with_hop_limit_and_mtu_errors() {
    let mut net = Net::prepare(None, &[]);
    let lan = Netns::new("v6r");
    let veth = vnet_testkit::Veth::new("v6r", Some(&net.host), Some(&lan));
    for ns in [&net.host, &lan] {
        for kv in [
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
        ] {
            sysctl(ns, kv);
        }
    }
    sysctl(
        &net.host,
        &format!("net.ipv6.conf.{}.disable_ipv6=0", veth.a()),
    );
    sysctl(&lan, &format!("net.ipv6.conf.{}.disable_ipv6=0", veth.b()));
    // no kernel forwarding in the switchd namespace: switchd alone routes
    sysctl(&net.host, "net.ipv6.conf.all.forwarding=0");
    let (a, b) = (veth.a(), veth.b());
    net.host
        .run_ok("ip", &["addr", "add", "10.97.0.1/24", "dev", a]);
    net.host.run_ok(
        "ip",
        &["-6", "addr", "add", "2001:db8:97::1/64", "dev", a, "nodad"],
    );
    // the uplink's MTU is IPv6's minimum: a larger guest packet gets packet too big
    net.host
        .run_ok("ip", &["link", "set", a, "mtu", "1280", "up"]);
    net.host.run_ok(
        "ip",
        &["-6", "route", "add", "default", "via", "2001:db8:97::2"],
    );
    lan.run_ok("ip", &["addr", "add", "10.97.0.2/24", "dev", b]);
    lan.run_ok(
        "ip",
        &["-6", "addr", "add", "2001:db8:97::2/64", "dev", b, "nodad"],
    );
    lan.run_ok("ip", &["link", "set", b, "mtu", "1280", "up"]);
    lan.run_ok("ip", &["link", "set", "lo", "up"]);
    // a LAN host one hop further (on the LAN router's lo) and the static route back
    lan.run_ok(
        "ip",
        &["-6", "addr", "add", "2001:db8:202::1/128", "dev", "lo"],
    );
    lan.run_ok(
        "ip",
        &[
            "-6",
            "route",
            "add",
            "fd00:140::/64",
            "via",
            "2001:db8:97::1",
        ],
    );
    std::fs::write(
        net.dir.path().join("net.xml"),
        format!(
            "<network><name>r6</name><forward mode='route' dev='{a}'/><bridge name='virbr6'/>\
             <ip address='192.168.140.1' netmask='255.255.255.0'/>\
             <ip family='ipv6' address='fd00:140::1' prefix='64'/></network>"
        ),
    )
    .expect("write config");
    net.launch();
    let vm = v6_guest(&net, "v6rg", "52:54:00:66:00:05");
    assert!(
        wait_for(Duration::from_secs(10), || slaac_address(&vm, "fd00:140::")
            .is_some()),
        "no SLAAC address: {}",
        net.log()
    );
    let guest = slaac_address(&vm, "fd00:140::").unwrap_or_default();
    for dst in ["2001:db8:97::2", "2001:db8:202::1"] {
        let out = vm.run("ping", &["-6", "-c", "1", "-W", "2", dst]);
        assert!(
            out.status.success(),
            "guest cannot ping {dst}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            net.log()
        );
    }
    // the LAN reaches the guest at its own address (no NAT)
    let out = lan.run("ping", &["-6", "-c", "1", "-W", "2", &guest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // the gateway is a hop: hop limit 1 expires there, with time exceeded from it
    let hl1 = vm.run(
        "ping",
        &["-6", "-c", "1", "-W", "2", "-t", "1", "2001:db8:202::1"],
    );
    let text = String::from_utf8_lossy(&hl1.stdout);
    assert!(
        text.contains("fd00:140::1") && text.to_lowercase().contains("time exceeded"),
        "{text}"
    );
    let (hops, text) = clients::traceroute_hops(&vm, "2001:db8:202::1");
    assert_eq!(hops, ["fd00:140::1", "2001:db8:202::1"], "{text}");
    // a 1500-byte packet towards the 1280-byte uplink: packet too big from the gateway
    let big = vm.run(
        "ping",
        &[
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "-s",
            "1452",
            "-M",
            "do",
            "2001:db8:202::1",
        ],
    );
    let text = String::from_utf8_lossy(&big.stdout).to_lowercase();
    assert!(
        text.contains("packet too big") && text.contains("1280"),
        "{text}\n{}",
        net.log()
    );
    let fwd = net
        .host
        .run_ok("cat", &["/proc/sys/net/ipv6/conf/all/forwarding"]);
    assert_eq!(fwd.trim(), "0");
}
