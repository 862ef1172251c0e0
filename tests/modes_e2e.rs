//! Network modes other than NAT, AF_PACKET ports and several networks at once.
//!
//! Topologies (all namespaces made here, removed on drop):
//! - bridge: switchd in `vth-*`, its uplink a veth whose other end is in a "lan"
//!   namespace (10.66.0.1/24) running dnsmasq as the LAN's DHCP server;
//! - netdev port: a guest namespace joined by a veth whose switch end switchd attaches
//!   with `port-add NET netdev IFNAME`;
//! - isolated: a "wan" namespace behind a veth of the switchd namespace, which no guest
//!   packet may reach;
//! - two networks: two switchd processes in one namespace and run dir.

mod common;

use std::time::Duration;

use common::clients::{self, udhcpc};
use common::{Net, SWITCHD};
use vnet_testkit::{wait_for, ChildGuard, Netns, Veth};

fn py(ns: &Netns, code: &str) -> std::process::Output {
    ns.run("python3", &["-c", code])
}

/// Sends `len` random bytes from `from` to a receiver in `to` at `ip:port` over TCP and
/// checks the receiver got them all, unchanged (sha256).
fn tcp_transfer(from: &Netns, to: &Netns, ip: &str, port: u16, len: usize) {
    let mut cmd = to.cmd(
        "python3",
        &[
            "-c",
            &format!(
                "import socket,hashlib\n\
                 l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 l.bind(('0.0.0.0',{port})); l.listen(1); c,_=l.accept(); h=hashlib.sha256(); n=0\n\
                 while True:\n  b=c.recv(1<<20)\n  if not b: break\n  h.update(b); n+=len(b)\n\
                 print(n, h.hexdigest(), flush=True)"
            ),
        ],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let recv = ChildGuard::spawn(cmd);
    let send = format!(
        "import socket,hashlib,os,time\n\
         d=os.urandom({len}); s=None\n\
         for i in range(50):\n  \
           try:\n    s=socket.create_connection(('{ip}',{port}),timeout=5); break\n  \
           except OSError: time.sleep(0.1)\n\
         s.sendall(d); s.shutdown(socket.SHUT_WR); s.recv(1)\n\
         print({len}, hashlib.sha256(d).hexdigest())"
    );
    let out = py(from, &send);
    assert!(
        out.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (got, err) = recv
        .wait_output(Duration::from_secs(30))
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap_or_default();
    assert_eq!(
        got, sent,
        "the receiver got other bytes than were sent: {err}"
    );
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    ns.run_ok(
        "cat",
        &[&format!("/sys/class/net/{dev}/statistics/rx_packets")],
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

fn no_ipv6(ns: &Netns, dev: &str) {
    ns.run_ok(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")],
    );
}

#[test]
fn bridge_mode_guests_lease_from_the_lan_and_talk_to_it_and_each_other() {
    let mut net = Net::prepare(None, &["--fdb-max-entries", "256"]);
    let lan = Netns::new("vtl");
    let veth = Veth::new("vu", Some(&net.host), Some(&lan));
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    lan.run_ok("ip", &["addr", "add", "10.66.0.1/24", "dev", veth.b()]);
    lan.run_ok("ip", &["link", "set", veth.b(), "up"]);
    let leases = net.dir.path().join("lan.leases");
    let mut dnsmasq = lan.cmd(
        "dnsmasq",
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--bind-interfaces",
            &format!("--interface={}", veth.b()),
            "--except-interface=lo",
            "--port=0",
            "--dhcp-range=10.66.0.100,10.66.0.150,1h",
            &format!("--dhcp-leasefile={}", leases.display()),
            "--pid-file=",
        ],
    );
    dnsmasq.stderr(std::process::Stdio::null());
    let _dnsmasq = ChildGuard::spawn(dnsmasq);
    std::fs::write(
        net.dir.path().join("net.xml"),
        format!(
            "<network><name>b</name><forward mode='bridge'/><bridge name='{}'/></network>",
            veth.a()
        ),
    )
    .expect("write config");
    net.launch();
    let info = net.ctl_json(&["net-info", &net.name]);
    assert_eq!(info["live"]["mode"], "bridge");
    assert!(
        info["live"]["gateway"].is_null(),
        "no gateway in bridge mode: {info}"
    );
    let ports = net.port_list();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["kind"], "netdev");
    assert_eq!(ports[0]["ifname"], veth.a());

    let g1 = net.add_bare_guest("vtb1", "52:54:00:00:10:01");
    let g2 = net.add_bare_guest("vtb2", "52:54:00:00:10:02");
    let l1 = udhcpc(&net, &g1, "b1", &[]);
    let l2 = udhcpc(&net, &g2, "b2", &[]);
    for l in [&l1, &l2] {
        assert_eq!(
            l.get("serverid").map(String::as_str),
            Some("10.66.0.1"),
            "lease from the lan's dnsmasq: {l:?}\n{}",
            net.log()
        );
        assert!(l["ip"].starts_with("10.66.0.1"), "{l:?}");
    }
    assert!(g1
        .run("ping", &["-c", "1", "-W", "2", "10.66.0.1"])
        .status
        .success());
    assert!(g1
        .run("ping", &["-c", "1", "-W", "2", &l2["ip"]])
        .status
        .success());
    let lan_leases = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(
        lan_leases.contains("52:54:00:00:10:01") && lan_leases.contains("52:54:00:00:10:02"),
        "{lan_leases}"
    );
    // a TCP stream across the AF_PACKET uplink (GSO frames, partial checksums) arrives intact
    tcp_transfer(&g1, &lan, "10.66.0.1", 5001, 8 << 20);
    tcp_transfer(&lan, &g2, &l2["ip"], 5002, 8 << 20);

    // the uplink goes down and comes back: the switch keeps the port and recovers
    net.host.run_ok("ip", &["link", "set", veth.a(), "down"]);
    assert!(!g1
        .run("ping", &["-c", "1", "-W", "1", "10.66.0.1"])
        .status
        .success());
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    assert!(
        wait_for(Duration::from_secs(10), || g1
            .run("ping", &["-c", "1", "-W", "1", "10.66.0.1"])
            .status
            .success()),
        "no traffic after the uplink came back: {}",
        net.log()
    );
    assert!(net.daemon_mut().is_running());
    assert_eq!(net.port_list().len(), 3);

    // a flood from the LAN: 5000 frames from random MACs to random MACs. Flooded to the
    // guests (that is switching), counted, and the FDB stays within its bound with the
    // guests' own entries kept (eviction takes from the port that holds the most).
    let flood = format!(
        "import socket,os\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('{}',0))\n\
         for i in range(5000):\n  \
           src=bytes([2])+os.urandom(5); dst=bytes([2])+os.urandom(5)\n  \
           s.send(dst+src+b'\\x88\\xb5'+b'x'*46)",
        veth.b()
    );
    let uplink = |net: &Net| {
        net.port_list()
            .into_iter()
            .find(|p| p["kind"] == "netdev")
            .expect("uplink port")
    };
    // every frame is read, or dropped and counted: by switchd's socket when switchd
    // falls behind (rx-overflow), or by the veth's backlog before any socket sees it
    let seen = |net: &Net| {
        let p = uplink(net);
        let veth_drops = net
            .host
            .run_ok(
                "cat",
                &[&format!(
                    "/sys/class/net/{}/statistics/rx_dropped",
                    veth.a()
                )],
            )
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        p["counters"]["rx_frames"].as_u64().unwrap_or(0)
            + p["counters"]["drops"]["rx-overflow"].as_u64().unwrap_or(0)
            + veth_drops
    };
    let before = seen(&net);
    let out = py(&lan, &flood);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(5), || seen(&net) >= before + 5000),
        "{} (before: {before})",
        uplink(&net)
    );
    let fdb = net.fdb();
    assert!(fdb.len() <= 256, "FDB past its bound: {}", fdb.len());
    for g in [&g1, &g2] {
        assert!(g
            .run("ping", &["-c", "1", "-W", "2", "10.66.0.1"])
            .status
            .success());
    }
    assert!(net.daemon_mut().is_running());
}

#[test]
fn a_bridge_uplink_that_does_not_exist_is_refused_with_the_element() {
    let net = Net::prepare(
        Some("<network><name>b</name><forward mode='bridge'/><bridge name='nosuch0'/></network>"),
        &[],
    );
    let mut cmd = net.host.cmd(SWITCHD, &["--name", &net.name, "--config"]);
    cmd.arg(net.dir.path().join("net.xml"))
        .arg("--run-dir")
        .arg(net.dir.path())
        .arg("--state-dir")
        .arg(net.dir.path().join("state"));
    let out = cmd.output().expect("run switchd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<bridge name>") && err.contains("nosuch0") && err.contains("no interface"),
        "{err}"
    );
    // nothing is left running: the name is free
    assert!(!net.socket().exists());
}

#[test]
fn a_netdev_port_joins_a_veth_guest_to_the_segment() {
    let net = Net::start();
    let vg = Netns::new("vtv");
    let veth = Veth::new("vp", Some(&net.host), Some(&vg));
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    vg.run_ok("ip", &["link", "set", veth.b(), "name", "eth0"]);
    vg.run_ok(
        "ip",
        &["link", "set", "eth0", "address", "52:54:00:00:20:01"],
    );
    vg.run_ok("ip", &["link", "set", "eth0", "up"]);
    let info = net.ctl_json(&["port-add", &net.name, "netdev", veth.a()]);
    assert_eq!(info["kind"], "netdev");
    assert_eq!(info["name"], veth.a());
    // a missing interface is an error naming it
    let err = net.ctl_err(&["port-add", &net.name, "netdev", "nosuch0"]);
    assert!(err.contains("nosuch0"), "{err}");

    let lease = udhcpc(&net, &vg, "v", &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("192.168.122."), "{lease:?}\n{}", net.log());
    assert!(vg
        .run("ping", &["-c", "1", "-W", "2", "192.168.122.1"])
        .status
        .success());
    let tg = net.add_bare_guest("vtt", "52:54:00:00:20:02");
    let tl = udhcpc(&net, &tg, "t", &[]);
    // both ways between the veth guest and a TAP guest, with offloads on both
    tcp_transfer(&vg, &tg, &tl["ip"], 5003, 8 << 20);
    tcp_transfer(&tg, &vg, &ip, 5004, 8 << 20);
    let p = net
        .port_list()
        .into_iter()
        .find(|p| p["kind"] == "netdev")
        .expect("the netdev port");
    assert!(p["counters"]["rx_frames"].as_u64().unwrap_or(0) > 10, "{p}");
    net.ctl_json(&["port-del", &net.name, veth.a()]);
    assert!(!vg
        .run("ping", &["-c", "1", "-W", "1", "192.168.122.1"])
        .status
        .success());
}

const ISOLATED: &str = "<network><name>iso</name><bridge name='virbr9'/>\
    <domain name='iso.test'/>\
    <ip address='10.55.0.1' netmask='255.255.255.0'>\
    <dhcp><range start='10.55.0.100' end='10.55.0.199'/></dhcp></ip></network>";

#[test]
fn an_isolated_network_serves_its_guests_and_lets_nothing_out() {
    let net = Net::start_with(Some(ISOLATED));
    // a wan the switchd namespace could reach, were anything forwarded
    let wan = Netns::new("vtw");
    let veth = Veth::new("vi", Some(&net.host), Some(&wan));
    no_ipv6(&net.host, veth.a());
    no_ipv6(&wan, veth.b());
    net.host
        .run_ok("ip", &["addr", "add", "10.98.5.1/24", "dev", veth.a()]);
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    net.host
        .run_ok("ip", &["route", "add", "default", "via", "10.98.5.2"]);
    wan.run_ok("ip", &["addr", "add", "10.98.5.2/24", "dev", veth.b()]);
    wan.run_ok("ip", &["link", "set", veth.b(), "up"]);
    assert_eq!(
        net.ctl_json(&["net-info", &net.name])["live"]["mode"],
        "isolated"
    );

    let g1 = net.add_bare_guest("vti1", "52:54:00:00:30:01");
    let g2 = net.add_bare_guest("vti2", "52:54:00:00:30:02");
    let l1 = udhcpc(&net, &g1, "i1", &["-x", "hostname:alpha"]);
    let l2 = udhcpc(&net, &g2, "i2", &["-x", "hostname:beta"]);
    assert!(l1["ip"].starts_with("10.55.0."), "{l1:?}\n{}", net.log());
    assert!(l2["ip"].starts_with("10.55.0."), "{l2:?}");
    assert!(
        l1.get("router").is_none_or(String::is_empty),
        "an isolated network offers no router: {l1:?}"
    );
    // guests reach each other and the gateway
    assert!(g1
        .run("ping", &["-c", "1", "-W", "2", &l2["ip"]])
        .status
        .success());
    assert!(g1
        .run("ping", &["-c", "1", "-W", "2", "10.55.0.1"])
        .status
        .success());
    // local names resolve; others are refused, not forwarded
    let dig = |name: &str| {
        String::from_utf8_lossy(
            &g1.run("dig", &["+tries=1", "+time=2", "@10.55.0.1", name, "A"])
                .stdout,
        )
        .into_owned()
    };
    let beta = dig("beta.iso.test");
    assert!(beta.contains(&l2["ip"]), "{beta}");
    let other = dig("example.com");
    assert!(other.contains("REFUSED"), "{other}");

    // a guest that routes via the gateway anyway gets nothing to the wan
    g1.run_ok("ip", &["route", "replace", "default", "via", "10.55.0.1"]);
    let before = rx_packets(&wan, veth.b());
    assert!(!g1
        .run("ping", &["-c", "2", "-W", "1", "10.98.5.2"])
        .status
        .success());
    let tcp = py(
        &g1,
        "import socket\ns=socket.socket()\ns.settimeout(2)\ntry:\n  s.connect(('10.98.5.2',80))\n  print('connected')\nexcept OSError as e:\n  print(e)",
    );
    assert!(!String::from_utf8_lossy(&tcp.stdout).contains("connected"));
    g1.run("dig", &["+tries=1", "+time=1", "@10.98.5.2", "example.com"]);
    assert_eq!(
        rx_packets(&wan, veth.b()),
        before,
        "the wan saw packets from an isolated network"
    );
}

#[test]
fn two_networks_at_once_keep_their_segments_and_leases_apart() {
    let net = Net::start();
    // a second network in the same namespace and run dir, another subnet
    let xml2 = "<network><name>two</name><bridge name='virbr8'/>\
        <ip address='192.168.150.1' netmask='255.255.255.0'>\
        <dhcp><range start='192.168.150.10' end='192.168.150.20'/></dhcp></ip></network>";
    let cfg2 = net.dir.path().join("two.xml");
    std::fs::write(&cfg2, xml2).expect("write config");
    let name2 = format!("{}b", net.name);
    let mut cmd = net.host.cmd(SWITCHD, &["--name", &name2, "--config"]);
    cmd.arg(&cfg2)
        .arg("--run-dir")
        .arg(net.dir.path())
        .arg("--state-dir")
        .arg(net.dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _d2 = ChildGuard::spawn(cmd);
    let sock2 = vnet_control::control_socket_path(net.dir.path(), &name2);
    assert!(wait_for(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&sock2).is_ok()
    }));

    let a = net.add_bare_guest("vta", "52:54:00:00:40:01");
    let b = Netns::new("vtb");
    net.ctl_json(&[
        "port-add",
        &name2,
        "tap",
        "--netns",
        b.name(),
        "--ifname",
        "eth0",
        "--mac",
        "52:54:00:00:40:02",
    ]);
    b.run_ok("ip", &["link", "set", "eth0", "up"]);
    let la = udhcpc(&net, &a, "a", &[]);
    let lb = udhcpc(&net, &b, "b", &[]);
    assert!(la["ip"].starts_with("192.168.122."), "{la:?}");
    assert!(lb["ip"].starts_with("192.168.150."), "{lb:?}");
    assert_eq!(la["serverid"], "192.168.122.1");
    assert_eq!(lb["serverid"], "192.168.150.1");
    // each network's lease list holds its own guest only
    let leases_a = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    let leases_b = net.ctl_json(&["net-dhcp-leases", &name2]).to_string();
    assert!(leases_a.contains("52:54:00:00:40:01") && !leases_a.contains("52:54:00:00:40:02"));
    assert!(leases_b.contains("52:54:00:00:40:02") && !leases_b.contains("52:54:00:00:40:01"));
    // no L2 path: even with the other subnet on-link, a cannot resolve b
    a.run_ok("ip", &["route", "add", "192.168.150.0/24", "dev", "eth0"]);
    assert!(!a
        .run("ping", &["-c", "2", "-W", "1", &lb["ip"]])
        .status
        .success());
    let fdb_a = net.fdb();
    assert!(
        !serde_json::Value::Array(fdb_a)
            .to_string()
            .contains("52:54:00:00:40:02"),
        "b's MAC must not appear in a's switch"
    );
}

#[test]
fn the_host_port_lets_the_host_reach_guests_by_address() {
    let net = Net::start();
    let host_port = net
        .port_list()
        .into_iter()
        .find(|p| p["ifname"] == "virbr0")
        .unwrap_or_else(|| panic!("no virbr0 host port: {}", net.log()));
    assert_eq!(host_port["kind"], "tap");
    let addrs = net
        .host
        .run_ok("ip", &["-4", "-o", "addr", "show", "dev", "virbr0"]);
    assert!(addrs.contains("192.168.122.1/24"), "{addrs}");

    let g = net.add_bare_guest("vth1", "52:54:00:00:50:01");
    let lease = udhcpc(&net, &g, "h", &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("192.168.122."), "{lease:?}\n{}", net.log());
    // the host pings the guest and connects to its server, by the guest's address
    assert!(
        net.host
            .run("ping", &["-c", "1", "-W", "2", &ip])
            .status
            .success(),
        "{}",
        net.log()
    );
    tcp_transfer(&net.host, &g, &ip, 5005, 4 << 20);
    // the guest reaches a host service (on any address) through the gateway address;
    // the host kernel answers it, not the NAT engine
    tcp_transfer(&g, &net.host, "192.168.122.1", 5006, 4 << 20);
    let flows = net.ctl_json(&["nat-flows", &net.name]).to_string();
    assert!(!flows.contains("5006"), "{flows}");
    // the gateway's own services still answer: DNS on the gateway address
    let dig = g.run(
        "dig",
        &["+short", "+tries=1", "@192.168.122.1", "vth1.example", "A"],
    );
    assert!(
        dig.status.success(),
        "{}",
        String::from_utf8_lossy(&dig.stdout)
    );
}

#[test]
fn route_mode_forwards_guest_packets_unchanged_both_ways() {
    let mut net = Net::prepare(None, &[]);
    let lan = Netns::new("vtr");
    let veth = Veth::new("vr", Some(&net.host), Some(&lan));
    no_ipv6(&net.host, veth.a());
    net.host
        .run_ok("ip", &["addr", "add", "10.97.0.1/24", "dev", veth.a()]);
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    net.host
        .run_ok("ip", &["route", "add", "default", "via", "10.97.0.2"]);
    // no kernel forwarding in the switchd namespace: switchd alone routes
    net.host.run_ok("sysctl", &["-qw", "net.ipv4.ip_forward=0"]);
    lan.run_ok("ip", &["addr", "add", "10.97.0.2/24", "dev", veth.b()]);
    lan.run_ok("ip", &["link", "set", veth.b(), "up"]);
    lan.run_ok("ip", &["link", "set", "lo", "up"]);
    // a LAN host one hop further (on the lan router's lo) and the static route back
    lan.run_ok("ip", &["addr", "add", "10.200.2.1/32", "dev", "lo"]);
    lan.run_ok(
        "ip",
        &["route", "add", "192.168.140.0/24", "via", "10.97.0.1"],
    );
    std::fs::write(
        net.dir.path().join("net.xml"),
        format!(
            "<network><name>r</name><forward mode='route' dev='{}'/><bridge name='virbr7'/>\
             <ip address='192.168.140.1' netmask='255.255.255.0'><dhcp>\
             <range start='192.168.140.100' end='192.168.140.200'/></dhcp></ip></network>",
            veth.a()
        ),
    )
    .expect("write config");
    net.launch();
    let g = net.add_bare_guest("vtrg", "52:54:00:00:60:01");
    let lease = udhcpc(&net, &g, "r", &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("192.168.140."), "{lease:?}\n{}", net.log());
    assert_eq!(lease["router"], "192.168.140.1");

    for dst in ["10.97.0.2", "10.200.2.1"] {
        assert!(
            g.run("ping", &["-c", "1", "-W", "2", dst]).status.success(),
            "guest cannot ping {dst}: {}",
            net.log()
        );
    }
    assert!(lan
        .run("ping", &["-c", "1", "-W", "2", &ip])
        .status
        .success());
    // the LAN server sees the guest's own address (no NAT)
    let _who = ChildGuard::spawn(lan.cmd(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',7000))\ns.listen(8)\n\
             while True:\n    c,a=s.accept()\n    c.sendall(('you are '+a[0]).encode())\n    c.close()\n",
        ],
    ));
    let ask = "import socket,time\nfor i in range(50):\n  try:\n    s=socket.create_connection(('10.200.2.1',7000),timeout=2); print(s.recv(100).decode()); break\n  except OSError: time.sleep(0.1)";
    let seen = String::from_utf8_lossy(&py(&g, ask).stdout)
        .trim()
        .to_owned();
    assert_eq!(seen, format!("you are {ip}"));
    // TCP both ways, 64 KiB TSO frames and all
    tcp_transfer(&g, &lan, "10.200.2.1", 5010, 8 << 20);
    tcp_transfer(&lan, &g, &ip, 5011, 8 << 20);
    // the LAN runs iperf3 against the guest
    let mut iperf = g.cmd("iperf3", &["-s", "-p", "5201"]);
    iperf.stdout(std::process::Stdio::null());
    let _iperf = ChildGuard::spawn(iperf);
    let mut bps = 0.0;
    assert!(
        wait_for(Duration::from_secs(10), || {
            let out = lan.run("iperf3", &["-c", &ip, "-p", "5201", "-t", "1", "-J"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            bps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0);
            bps > 0.0
        }),
        "iperf3 from the LAN to the guest failed: {}",
        net.log()
    );
    eprintln!(
        "iperf3 lan -> guest through route mode: {:.2} Gbit/s",
        bps / 1e9
    );
    // traceroute from the guest: the gateway, then the LAN host
    let (hops, text) = clients::traceroute_hops(&g, "10.200.2.1");
    assert_eq!(hops, ["192.168.140.1", "10.200.2.1"], "{text}");
    // the gateway is a hop: TTL 1 expires there, with an ICMP time exceeded from it
    let ttl1 = g.run("ping", &["-c", "1", "-W", "2", "-t", "1", "10.200.2.1"]);
    let text = String::from_utf8_lossy(&ttl1.stdout);
    assert!(
        text.contains("192.168.140.1") && text.contains("Time to live exceeded"),
        "{text}"
    );
    // nothing the guest sent went through the kernel's forwarding
    let fwd = net.host.run_ok("cat", &["/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(fwd.trim(), "0");
    // an address with no one behind it: host unreachable, not a hang
    let dead = g.run("ping", &["-c", "1", "-W", "3", "10.97.0.99"]);
    let text = String::from_utf8_lossy(&dead.stdout);
    assert!(text.contains("Destination Host Unreachable"), "{text}");

    // a flood from the LAN to guest addresses nobody holds: the packets waiting for ARP
    // are bounded, the rest dropped and counted; the real guest stays reachable
    let flood = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 for r in range(12):\n  for i in range(2,255):\n    \
                 try: s.sendto(b'x',('192.168.140.%d'%i,9))\n    except OSError: pass";
    let out = py(&lan, flood);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let router = || net.ctl_json(&["net-info", &net.name])["live"]["router"].clone();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let r = router();
            r["waiting_full"].as_u64().unwrap_or(0) > 0 && r["unresolved"].as_u64().unwrap_or(0) > 0
        }),
        "{}",
        router()
    );
    assert!(lan
        .run("ping", &["-c", "1", "-W", "2", &ip])
        .status
        .success());
}
