//! The built-in DNS server against `dig` in guest namespaces, with upstream DNS servers
//! (dnsmasq) in a "wan" namespace the test creates: never a real resolver.
//!
//! Topology: switchd runs in the host namespace `vth-*`; a veth joins it to `wan-*`
//! (host 10.99.0.1/24, wan 10.99.0.2–.5/24) where the upstreams listen.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::clients::{dhclient_release, dhclient_with, udhcpc};
use common::Net;
use vnet_testkit::{wait_for, ChildGuard, Netns, Veth};

const NET: &str = "<network>
  <name>dns</name>
  <forward mode='nat'/>
  <domain name='vnet.test' localOnly='yes'/>
  <dns>
    <forwarder domain='corp.test' addr='10.99.0.3'/>
    <forwarder domain='lan.test'/>
    <host ip='192.168.122.200'><hostname>printer</hostname><hostname>printer.vnet.test</hostname></host>
    <host ip='fd00::200'><hostname>v6only</hostname></host>
    <txt name='info' value='hello from vnet'/>
    <srv service='ldap' protocol='tcp' domain='vnet.test' target='ldap.vnet.test' port='389' priority='10' weight='5'/>
  </dns>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
      <host mac='52:54:00:70:00:09' name='reserved' ip='192.168.122.9'/>
    </dhcp>
  </ip>
</network>";

/// The wan namespace with its dnsmasq upstreams.
struct Wan {
    // the upstreams go before the namespace
    upstreams: Vec<ChildGuard>,
    _veth: Veth,
    ns: Netns,
}

impl Wan {
    fn new(net: &Net) -> Self {
        let ns = Netns::new("wan");
        let veth = Veth::new("vw", Some(&net.host), Some(&ns));
        net.host
            .run_ok("ip", &["addr", "add", "10.99.0.1/24", "dev", veth.a()]);
        net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
        for a in ["10.99.0.2/24", "10.99.0.3/24", "10.99.0.4/24"] {
            ns.run_ok("ip", &["addr", "add", a, "dev", veth.b()]);
        }
        ns.run_ok("ip", &["link", "set", veth.b(), "up"]);
        Self {
            upstreams: Vec::new(),
            _veth: veth,
            ns,
        }
    }

    /// Starts a dnsmasq on `addr`:53 with `extra` options; its query log is returned.
    fn dnsmasq(&mut self, net: &Net, addr: &str, extra: &[&str]) -> PathBuf {
        let log = net.dir.path().join(format!("dnsmasq-{addr}.log"));
        let pid = net.dir.path().join(format!("dnsmasq-{addr}.pid"));
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--bind-interfaces".to_owned(),
            format!("--listen-address={addr}"),
            "--except-interface=lo".to_owned(),
            "--port=53".to_owned(),
            "--log-queries".to_owned(),
            format!("--log-facility={}", log.display()),
            format!("--pid-file={}", pid.display()),
            "--user=root".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.upstreams
            .push(ChildGuard::spawn(self.ns.cmd("dnsmasq", &refs)));
        let up = wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started"))
        });
        assert!(up, "dnsmasq on {addr} did not start");
        log
    }
}

/// Points the host namespace's resolv.conf (switchd's upstreams when the network names
/// no general forwarder) at `addr`, and waits until switchd has read it.
fn set_host_resolver(net: &Net, addr: &str) {
    let path = PathBuf::from("/etc/netns")
        .join(net.host.name())
        .join("resolv.conf");
    std::fs::write(&path, format!("nameserver {addr}\n")).expect("resolv.conf");
    let want = format!("{addr}:53");
    assert!(
        wait_for(Duration::from_secs(5), || net
            .log()
            .lines()
            .any(|l| l.contains("host resolvers") && l.contains(&want))),
        "switchd did not read the new resolv.conf: {}",
        net.log()
    );
}

/// `dig @gateway ARGS +short`-style query from `ns`; returns (status, answer lines).
fn dig(ns: &Netns, args: &[&str]) -> (String, Vec<String>) {
    let mut a = vec![
        "@192.168.122.1",
        "+time=3",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
    ];
    a.extend_from_slice(args);
    let out = ns.run("dig", &a);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| format!("no answer: {text}"));
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

fn queries_seen(log: &PathBuf, name: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("query[") && l.contains(name))
        .count()
}

#[test]
fn guests_resolve_leases_reservations_and_static_records() {
    let net = Net::start_with(Some(NET));
    let vm1 = net.add_bare_guest("vns1", "52:54:00:70:00:01");
    let vm2 = net.add_bare_guest("vns2", "52:54:00:70:00:02");
    let res = net.add_bare_guest("vns3", "52:54:00:70:00:09");
    let a = udhcpc(&net, &vm1, "vm1", &["-x", "hostname:vm1"]);
    let b = udhcpc(&net, &vm2, "vm2", &[]);
    let r = udhcpc(&net, &res, "res", &[]);
    assert_eq!(r.get("ip").map(String::as_str), Some("192.168.122.9"));
    let ip1 = a["ip"].clone();
    assert_eq!(b["dns"], "192.168.122.1");

    // another guest's DHCP hostname, at once (the lease was ACKed a moment ago)
    assert_eq!(
        dig(&vm2, &["vm1.vnet.test", "A"]),
        ("NOERROR".into(), vec![format!("A {ip1}")])
    );
    assert_eq!(dig(&vm2, &["vm1", "A"]).1, vec![format!("A {ip1}")]);
    let rev: Vec<&str> = ip1.split('.').rev().collect();
    let ptr = format!("{}.in-addr.arpa", rev.join("."));
    assert_eq!(
        dig(&vm2, &["-x", &ip1]).1,
        vec!["PTR vm1.vnet.test.".to_owned()],
        "PTR {ptr}"
    );
    // a reservation's name
    assert_eq!(
        dig(&vm1, &["reserved.vnet.test"]).1,
        vec!["A 192.168.122.9".to_owned()]
    );
    // <dns><host>, TXT, SRV
    assert_eq!(
        dig(&vm1, &["printer.vnet.test"]).1,
        vec!["A 192.168.122.200".to_owned()]
    );
    assert_eq!(
        dig(&vm1, &["v6only", "AAAA"]).1,
        vec!["AAAA fd00::200".to_owned()]
    );
    assert_eq!(
        // as dnsmasq's txt-record: the name as written, not under the domain
        dig(&vm1, &["info", "TXT"]).1,
        vec!["TXT \"hello from vnet\"".to_owned()]
    );
    assert_eq!(
        dig(&vm1, &["_ldap._tcp.vnet.test", "SRV"]).1,
        vec!["SRV 10 5 389 ldap.vnet.test.".to_owned()]
    );
    // NXDOMAIN for an unknown local name, NODATA for a type a known name lacks
    assert_eq!(dig(&vm1, &["nosuch.vnet.test"]).0, "NXDOMAIN");
    assert_eq!(
        dig(&vm1, &["vm1.vnet.test", "AAAA"]),
        ("NOERROR".into(), vec![])
    );
    // a domain answered locally only
    assert_eq!(dig(&vm1, &["x.lan.test"]).0, "NXDOMAIN");
    // over TCP
    assert_eq!(
        dig(&vm2, &["+tcp", "vm1.vnet.test"]).1,
        vec![format!("A {ip1}")]
    );

    // net-dns-records lists what is served
    let rows = net.ctl_json(&["net-dns-records", &net.name]);
    let rows = rows.as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["name"] == "vm1.vnet.test" && r["value"] == ip1.as_str()),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r["type"] == "SRV"), "{rows:?}");
}

#[test]
fn a_hostname_comes_with_its_lease_and_goes_with_its_release() {
    let net = Net::start_with(Some(NET));
    let vm = net.add_bare_guest("vnh1", "52:54:00:71:00:01");
    let asker = net.add_bare_guest("vnh2", "52:54:00:71:00:02");
    asker.run_ok("ip", &["addr", "add", "192.168.122.250/24", "dev", "eth0"]);
    assert_eq!(dig(&asker, &["hostvm.vnet.test"]).0, "NXDOMAIN");
    // dhclient sends the host name given in its config
    let conf = net.dir.path().join("dhclient-h.conf");
    std::fs::write(&conf, "send host-name \"hostvm\";\n").expect("conf");
    let got = dhclient_with(&net, &vm, "h", &["-cf", &conf.to_string_lossy()]);
    let ip = got["ip"].clone();
    assert_eq!(
        dig(&asker, &["hostvm.vnet.test"]).1,
        vec![format!("A {ip}")],
        "{}",
        net.log()
    );
    dhclient_release(&net, &vm, "h");
    assert!(net.log().contains("DHCPRELEASE"));
    assert_eq!(dig(&asker, &["hostvm.vnet.test"]).0, "NXDOMAIN");
}

#[test]
fn forwarding_caching_and_per_domain_forwarders() {
    let net = Net::start_with(Some(NET));
    let mut wan = Wan::new(&net);
    let general = wan.dnsmasq(
        &net,
        "10.99.0.2",
        &["--address=/example.test/10.1.2.3", "--local-ttl=300"],
    );
    let corp = wan.dnsmasq(
        &net,
        "10.99.0.3",
        &["--address=/corp.test/10.5.5.5", "--local-ttl=300"],
    );
    set_host_resolver(&net, "10.99.0.2");
    let vm = net.add_bare_guest("vnf1", "52:54:00:72:00:01");
    vm.run_ok("ip", &["addr", "add", "192.168.122.50/24", "dev", "eth0"]);

    assert_eq!(
        dig(&vm, &["www.example.test"]),
        ("NOERROR".into(), vec!["A 10.1.2.3".to_owned()]),
        "{}",
        net.log()
    );
    // the second time from the cache: the upstream saw one query
    assert_eq!(
        dig(&vm, &["www.example.test"]).1,
        vec!["A 10.1.2.3".to_owned()]
    );
    assert_eq!(queries_seen(&general, "www.example.test"), 1);
    // a per-domain forwarder
    assert_eq!(
        dig(&vm, &["host.corp.test"]).1,
        vec!["A 10.5.5.5".to_owned()]
    );
    assert_eq!(queries_seen(&corp, "host.corp.test"), 1);
    assert_eq!(queries_seen(&general, "host.corp.test"), 0);
    // names under the network's domain are never forwarded
    assert_eq!(dig(&vm, &["nosuch.vnet.test"]).0, "NXDOMAIN");
    assert_eq!(queries_seen(&general, "vnet.test"), 0);
    // a query that is not from a guest of the network is refused silently: none here
    // (the segment is the only way in); the counters show what was served
    let info = net.ctl_json(&["net-info", &net.name]);
    let stats = &info["live"]["gateway"]["dns_stats"];
    assert!(stats.is_object(), "{info}");
}

#[test]
fn an_upstream_that_never_answers_gives_servfail_and_a_flood_does_not_starve_others() {
    let net = Net::start_with(Some(NET));
    let _wan = Wan::new(&net);
    // nothing listens on 10.99.0.4: queries vanish
    set_host_resolver(&net, "10.99.0.4");
    let vm = net.add_bare_guest("vnt1", "52:54:00:73:00:01");
    vm.run_ok("ip", &["addr", "add", "192.168.122.51/24", "dev", "eth0"]);
    let other = net.add_bare_guest("vnt2", "52:54:00:73:00:02");
    other.run_ok("ip", &["addr", "add", "192.168.122.52/24", "dev", "eth0"]);

    let (status, _) = dig(&vm, &["+time=10", "lost.example.test"]);
    assert_eq!(status, "SERVFAIL", "{}", net.log());

    // a flood of forwarded queries from one guest, plus malformed ones
    let py = "import socket,struct\n\
              s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
              for p in [b'',b'\\x01',b'\\xff'*11,b'\\x00\\x01\\x01\\x00\\x00\\x05'+b'\\x00'*6]:\n\
              \x20   s.sendto(p,('192.168.122.1',53))\n\
              for i in range(3000):\n\
              \x20   q=struct.pack('>HHHHHH',i,0x0100,1,0,0,0)+b'\\x0aflood'+str(i).encode().rjust(5,b'0')+b'\\x07example\\x04test\\x00\\x00\\x01\\x00\\x01'\n\
              \x20   s.sendto(q,('192.168.122.1',53))\n";
    vm.run_ok("python3", &["-c", py]);
    // the other guest is still answered, locally
    assert_eq!(
        dig(&other, &["printer.vnet.test"]).1,
        vec!["A 192.168.122.200".to_owned()]
    );
    // and its forwarded queries are admitted (SERVFAIL after the upstream timeout)
    assert_eq!(
        dig(&other, &["+time=10", "other.example.test"]).0,
        "SERVFAIL"
    );
    let stats = || net.ctl_json(&["net-info", &net.name])["live"]["gateway"]["dns_stats"].clone();
    let s = stats();
    assert!(
        s["dropped_client_limit"].as_u64().unwrap_or(0) > 0,
        "per-guest bound: {s}"
    );
    assert!(s["dropped_malformed"].as_u64().unwrap_or(0) >= 3, "{s}");
    // and everything in flight ends (SERVFAIL after the upstream timeout): no growth
    assert!(
        wait_for(Duration::from_secs(15), || stats()["in_flight"] == 0),
        "{}",
        stats()
    );
}

#[test]
fn forwarding_loops_are_detected() {
    // no host port: the host's own TAP below takes another address of the subnet, so
    // the upstream's queries to 192.168.122.1 reach the gateway, not the host kernel
    let xml = NET.replacen(
        "<network>\n  <name>dns</name>",
        "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'>\n  <name>dns</name>\n  <vnet:host-port enabled='no'/>",
        1,
    );
    let mut net = Net::start_with(Some(&xml));
    // the host reaches the segment over a TAP of its own
    net.ctl_json(&["port-add", &net.name, "tap", "--name", "vnhost0"]);
    net.host.run_ok(
        "ip",
        &["addr", "add", "192.168.122.254/24", "dev", "vnhost0"],
    );
    net.host.run_ok("ip", &["link", "set", "vnhost0", "up"]);
    net.host.run_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    let mut wan = Wan::new(&net);
    wan.ns.run_ok(
        "ip",
        &["route", "add", "192.168.122.0/24", "via", "10.99.0.1"],
    );
    // an upstream that forwards everything back to vnet
    let _loop_log = wan.dnsmasq(&net, "10.99.0.4", &["--server=192.168.122.1"]);
    set_host_resolver(&net, "10.99.0.4");
    assert!(
        wait_for(Duration::from_secs(10), || net
            .log()
            .contains("loop detected for upstream 10.99.0.4#53")),
        "no loop reported: {}",
        net.log()
    );
    // a guest's forwarded query is not sent round the loop: no upstream is left
    let vm = net.add_bare_guest("vnl1", "52:54:00:74:00:01");
    vm.run_ok("ip", &["addr", "add", "192.168.122.53/24", "dev", "eth0"]);
    assert_eq!(dig(&vm, &["www.example.test"]).0, "SERVFAIL");
    let _ = net.daemon_mut();
}

#[test]
fn a_resolv_conf_switchd_cannot_read_keeps_the_resolvers_read_before() {
    // switchd as nobody: a resolv.conf only root may read is one it cannot read (as one
    // it has no descriptor left to open would be)
    let mut net = Net::prepare(Some(NET), &["--user", "nobody"]);
    let state = net.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    for d in [net.dir.path(), state.as_path()] {
        let st = std::process::Command::new("chown")
            .arg("nobody:nogroup")
            .arg(d)
            .status()
            .expect("chown");
        assert!(st.success());
    }
    net.launch();
    let mut wan = Wan::new(&net);
    wan.dnsmasq(
        &net,
        "10.99.0.2",
        &["--address=/example.test/10.1.2.3", "--local-ttl=300"],
    );
    set_host_resolver(&net, "10.99.0.2");
    // a guest on a TAP switchd made in its own namespace, moved in by root
    let vm = net.add_moved_guest("vdr", None);
    let lease = udhcpc(&net, &vm, "vdr", &[]);
    assert!(lease.contains_key("ip"), "{lease:?}\n{}", net.log());
    assert_eq!(
        dig(&vm, &["a.example.test"]),
        ("NOERROR".to_owned(), vec!["A 10.1.2.3".to_owned()])
    );

    let conf = PathBuf::from("/etc/netns")
        .join(net.host.name())
        .join("resolv.conf");
    let before = net.log().len();
    let since = || net.log().get(before..).unwrap_or_default().to_owned();
    let st = std::process::Command::new("chmod")
        .arg("0600")
        .arg(&conf)
        .status()
        .expect("chmod");
    assert!(st.success());
    assert!(
        wait_for(Duration::from_secs(10), || {
            let log = since();
            log.contains("cannot read /etc/resolv.conf")
                || log.contains("host resolvers from /etc/resolv.conf: none")
        }),
        "{}",
        net.log()
    );
    // a name not in the cache still goes to the upstream read before
    assert_eq!(
        dig(&vm, &["b.example.test"]),
        ("NOERROR".to_owned(), vec!["A 10.1.2.3".to_owned()])
    );
    assert!(!since().contains("resolv.conf: none"), "{}", net.log());
}

#[test]
fn an_ipv6_upstream_resolver_is_forwarded_to() {
    let net = Net::start_with(Some(NET));
    let mut wan = Wan::new(&net);
    for ns in [&net.host, &wan.ns] {
        ns.run_ok(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ],
        );
    }
    let (a, b) = (wan._veth.a().to_owned(), wan._veth.b().to_owned());
    net.host.run_ok(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{a}.disable_ipv6=0")],
    );
    wan.ns.run_ok(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{b}.disable_ipv6=0")],
    );
    net.host.run_ok(
        "ip",
        &["-6", "addr", "add", "2001:db8:99::1/64", "dev", &a, "nodad"],
    );
    wan.ns.run_ok(
        "ip",
        &["-6", "addr", "add", "2001:db8:99::2/64", "dev", &b, "nodad"],
    );
    let v6 = wan.dnsmasq(
        &net,
        "2001:db8:99::2",
        &["--address=/six.test/10.6.6.6", "--local-ttl=300"],
    );
    // resolv.conf names the upstream by its IPv6 address
    let path = PathBuf::from("/etc/netns")
        .join(net.host.name())
        .join("resolv.conf");
    std::fs::write(&path, "nameserver 2001:db8:99::2\n").expect("resolv.conf");
    assert!(
        wait_for(Duration::from_secs(5), || net
            .log()
            .contains("[2001:db8:99::2]:53")),
        "switchd did not read the new resolv.conf: {}",
        net.log()
    );
    let vm = net.add_bare_guest("vn6u", "52:54:00:72:00:06");
    vm.run_ok("ip", &["addr", "add", "192.168.122.56/24", "dev", "eth0"]);
    assert_eq!(
        dig(&vm, &["www.six.test"]),
        ("NOERROR".into(), vec!["A 10.6.6.6".to_owned()]),
        "{}",
        net.log()
    );
    assert_eq!(queries_seen(&v6, "www.six.test"), 1);
}
