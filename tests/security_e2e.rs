//! Port security (`port-add --secure`): a protected guest can send only as itself — its
//! MAC, the address vnet leased it, ARP naming itself, no DHCP server — and the same
//! traffic from an unprotected guest passes.

mod common;

use std::time::Duration;

use common::clients::udhcpc;
use common::Net;
use vnet_testkit::{wait_for, ChildGuard, Netns};

/// `port-add NET tap --netns NS --ifname eth0 EXTRA…`: switchctl's arguments.
fn tap_args<'a>(net: &'a Net, ns: &'a Netns, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "port-add",
        &net.name,
        "tap",
        "--netns",
        ns.name(),
        "--ifname",
        "eth0",
    ];
    args.extend_from_slice(extra);
    args
}

/// A TAP port `eth0` in `ns` (`extra`: more port-add flags); its port-list entry.
fn add_tap(net: &Net, ns: &Netns, extra: &[&str]) -> serde_json::Value {
    net.ctl_json(&tap_args(net, ns, extra))
}

/// A NAT network `s` on 192.168.122.0/24 with DHCP, `extra` inside it.
fn nat_net(extra: &str) -> String {
    format!(
        "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>s</name><forward/>\
         <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
         <range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>{extra}</network>"
    )
}

fn guest(net: &Net, prefix: &str, mac: &str, secure: bool) -> (Netns, String, String) {
    let ns = Netns::new(prefix);
    let mut extra = vec!["--mac", mac];
    if secure {
        extra.push("--secure");
    }
    let info = add_tap(net, &ns, &extra);
    ns.run_ok("ip", &["link", "set", "eth0", "up"]);
    let lease = udhcpc(net, &ns, prefix, &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("192.168.122."), "{lease:?}\n{}", net.log());
    (ns, ip, info["name"].as_str().unwrap_or_default().to_owned())
}

fn drops(net: &Net, port: &str, reason: &str) -> u64 {
    net.port_list()
        .into_iter()
        .find(|p| p["name"] == port)
        .and_then(|p| p["counters"]["drops"][reason].as_u64())
        .unwrap_or(0)
}

fn ping(ns: &Netns, args: &[&str]) -> bool {
    let mut a = vec!["-c", "1", "-W", "2"];
    a.extend_from_slice(args);
    ns.run("ping", &a).status.success()
}

/// A gratuitous ARP reply from `ns`'s eth0 claiming `ip` for `mac`.
fn garp(ns: &Netns, mac: &str, ip: &str) {
    let code = format!(
        "import socket\nm=bytes.fromhex('{m}')\nip=bytes(int(x) for x in '{ip}'.split('.'))\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
         s.send(b'\\xff'*6+m+b'\\x08\\x06'+bytes([0,1,8,0,6,4,0,2])+m+ip+b'\\xff'*6+ip)",
        m = mac.replace(':', "")
    );
    let out = ns.run("python3", &["-c", &code]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_protected_port_cannot_spoof_and_an_unprotected_one_can() {
    let net = Net::start();
    let (g1, ip1, p1) = guest(&net, "vsa", "52:54:00:c0:00:01", true);
    let (g2, ip2, p2) = guest(&net, "vsb", "52:54:00:c0:00:02", false);
    // it works as itself; port-list shows what it is bound to
    assert!(ping(&g1, &[&ip2]), "{}", net.log());
    let info = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == p1.as_str())
        .expect("protected port");
    assert_eq!(info["security"]["mac"], "52:54:00:c0:00:01");
    assert_eq!(info["security"]["addrs"][0], ip1.as_str());

    // another source address
    g1.run_ok("ip", &["addr", "add", "192.168.122.250/24", "dev", "eth0"]);
    assert!(!ping(&g1, &["-I", "192.168.122.250", &ip2]));
    assert!(drops(&net, &p1, "spoofed-ip") > 0);
    g2.run_ok("ip", &["addr", "add", "192.168.122.251/24", "dev", "eth0"]);
    assert!(ping(&g2, &["-I", "192.168.122.251", &ip1]));
    assert_eq!(drops(&net, &p2, "spoofed-ip"), 0);

    // ARP claiming another guest's address
    garp(&g1, "52:54:00:c0:00:01", &ip2);
    assert!(wait_for(Duration::from_secs(2), || drops(
        &net,
        &p1,
        "spoofed-arp"
    ) > 0));
    garp(&g2, "52:54:00:c0:00:02", "192.168.122.251");
    assert_eq!(drops(&net, &p2, "spoofed-arp"), 0);

    // another MAC
    g1.run_ok(
        "ip",
        &["link", "set", "eth0", "address", "52:54:00:c0:00:99"],
    );
    assert!(!ping(&g1, &[&ip2]));
    assert!(drops(&net, &p1, "spoofed-mac") > 0);
    g1.run_ok(
        "ip",
        &["link", "set", "eth0", "address", "52:54:00:c0:00:01"],
    );
    assert!(
        wait_for(Duration::from_secs(5), || ping(&g1, &[&ip2])),
        "back to its own MAC, it works again"
    );

    // a DHCP server on the protected guest: its offers never reach a new guest
    let conf = net.dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 192.168.122.200\nend 192.168.122.210\ninterface eth0\n\
             lease_file {}\nopt router {ip1}\n",
            net.dir.path().join("udhcpd.leases").display()
        ),
    )
    .expect("udhcpd.conf");
    let _rogue =
        ChildGuard::spawn(g1.cmd("busybox", &["udhcpd", "-f", &conf.display().to_string()]));
    std::thread::sleep(Duration::from_millis(300));
    let g3 = net.add_bare_guest("vsc", "52:54:00:c0:00:03");
    let lease = udhcpc(&net, &g3, "c", &[]);
    assert_eq!(
        lease.get("serverid").map(String::as_str),
        Some("192.168.122.1"),
        "{lease:?}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || drops(&net, &p1, "rogue-dhcp")
            > 0),
        "{}",
        net.log()
    );
}

#[test]
fn a_mac_flood_keeps_to_its_share_while_other_guests_run_iperf3() {
    let mut net = Net::start_with_args(None, &["--fdb-max-entries", "1024"]);
    net.add_guest();
    net.add_guest();
    net.add_guest();
    let (g1, g2, g3) = (&net.guests[0], &net.guests[1], &net.guests[2]);
    let mut server = g2.ns.cmd("iperf3", &["-s", "-p", "5201"]);
    server.stdout(std::process::Stdio::null());
    let _server = ChildGuard::spawn(server);
    assert!(g2.ns.wait_listening(5201, Duration::from_secs(10)));
    assert!(wait_for(Duration::from_secs(5), || g1.ping(&g2.ip)));
    // one million frames from one million source MACs, broadcast
    let flood = "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
                 s.bind(('eth0',0))\nbody=b'\\x88\\xb5'+b'x'*46\nbc=b'\\xff'*6\n\
                 for i in range(1000000):\n  \
                   s.send(bc+b'\\x02\\x01'+i.to_bytes(4,'big')+body)\n";
    let mut f = g3.ns.cmd("python3", &["-c", flood]);
    f.stderr(std::process::Stdio::piped());
    let flooder = ChildGuard::spawn(f);
    let out = g1
        .ns
        .run("iperf3", &["-c", &g2.ip, "-p", "5201", "-t", "3", "-J"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        bps > 0.0,
        "iperf3 during the flood: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("iperf3 during a MAC flood: {:.2} Gbit/s", bps / 1e9);
    let done = flooder.wait_output(Duration::from_secs(120));
    assert!(
        done.is_some_and(|o| o.status.success()),
        "the flood did not finish"
    );
    let fdb = net.fdb();
    assert!(fdb.len() <= 1024, "FDB past its bound: {}", fdb.len());
    for g in [&net.guests[0], &net.guests[1]] {
        assert!(
            fdb.iter()
                .any(|r| r["mac"] == g.mac.as_str() && r["port"] == g.port.as_str()),
            "{} lost its entry",
            g.mac
        );
    }
    let flooder_port = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == net.guests[2].port.as_str())
        .expect("flooder port");
    assert!(
        flooder_port["counters"]["rx_frames"].as_u64() > Some(100_000),
        "{flooder_port}"
    );
    assert!(net.guests[0].ping(&net.guests[1].ip));
    assert!(net.daemon_mut().is_running());
}

#[test]
fn switchd_runs_as_a_dedicated_user_with_only_the_capabilities_it_keeps() {
    let mut net = Net::prepare(None, &["--user", "nobody", "--socket-group", "nogroup"]);
    // the state and run dirs belong to the user switchd becomes
    for sub in ["state/leases", "state/macs"] {
        std::fs::create_dir_all(net.dir.path().join(sub)).expect("dir");
    }
    let st = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(net.dir.path())
        .status()
        .expect("chown");
    assert!(st.success());
    net.launch();
    assert!(
        wait_for(Duration::from_secs(5), || net
            .log()
            .contains("running as nobody")),
        "{}",
        net.log()
    );
    let pid = net.daemon_mut().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert!(field("Uid:").starts_with("65534"), "{status}");
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13)
    assert_eq!(field("CapEff:"), "0000000000003400", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000003400", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    // its sockets are open to the group it was told, to no one else
    for ext in ["ctl", "stream", "dgram"] {
        use std::os::unix::fs::MetadataExt;
        let m =
            std::fs::metadata(net.dir.path().join(format!("{}.{ext}", net.name))).expect("socket");
        assert_eq!((m.gid(), m.mode() & 0o777), (65534, 0o660), "{ext}");
    }
    // entering a guest's namespace needs CAP_SYS_ADMIN, which it gave up: a clear error
    let err = net.ctl_err(&[
        "port-add", &net.name, "tap", "--netns", "nosuch", "--ifname", "eth0",
    ]);
    assert!(err.contains("nosuch"), "{err}");
    let g = Netns::new("vsu");
    let err = net.ctl_err(&tap_args(&net, &g, &[]));
    assert!(err.contains("Operation not permitted"), "{err}");
    // it still makes TAPs (CAP_NET_ADMIN) and serves DHCP: a TAP made in its namespace,
    // then moved into the guest's by root
    let g = net.add_moved_guest("vsm", Some("52:54:00:c1:00:01"));
    let lease = udhcpc(&net, &g, "u", &[]);
    assert!(
        lease
            .get("ip")
            .is_some_and(|ip| ip.starts_with("192.168.122.")),
        "{lease:?}\n{}",
        net.log()
    );
}

#[test]
fn port_security_for_the_whole_network_covers_every_guest_port() {
    let net = Net::start_with(Some(&nat_net("<vnet:port-security enabled='yes'/>")));
    // a TAP guest added without --secure is protected
    let (g, ip, p) = guest(&net, "vsn", "52:54:00:c2:00:01", false);
    let info = net
        .port_list()
        .into_iter()
        .find(|x| x["name"] == p.as_str())
        .expect("port");
    assert_eq!(info["security"]["addrs"][0], ip.as_str(), "{info}");
    assert!(ping(&g, &["192.168.122.1"]), "{}", net.log());
    g.run_ok("ip", &["addr", "add", "192.168.122.250/24", "dev", "eth0"]);
    assert!(!ping(&g, &["-I", "192.168.122.250", "192.168.122.1"]));
    assert!(drops(&net, &p, "spoofed-ip") > 0);
    // a port added --trusted is not
    let t = Netns::new("vst");
    let info = add_tap(&net, &t, &["--trusted"]);
    assert!(info["security"].is_null(), "{info}");
    // so is a QEMU stream peer: bound to the first MAC it sends from
    let stream = net.dir.path().join(format!("{}.stream", net.name));
    let code = format!(
        "import socket,struct\n\
         def f(m): return b'\\xff'*6+m+b'\\x08\\x06'+bytes([0,1,8,0,6,4,0,1])+m+bytes(4)+bytes(6)+bytes([192,168,122,1])\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect('{}')\n\
         for m in [b'\\x02\\x00\\x00\\x00\\x00\\x01', b'\\x02\\x00\\x00\\x00\\x00\\x02']:\n  \
           x=f(m); s.sendall(struct.pack('>I',len(x))+x)\n\
         import time; time.sleep(1)",
        stream.display()
    );
    let mut cmd = net.host.cmd("python3", &["-c", &code]);
    cmd.stdout(std::process::Stdio::null());
    let peer = ChildGuard::spawn(cmd);
    let stream_drops = || {
        net.port_list()
            .into_iter()
            .find(|x| x["kind"] == "stream")
            .and_then(|x| x["counters"]["drops"]["spoofed-mac"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(3), || stream_drops() == 1),
        "{:?}",
        net.port_list()
    );
    drop(peer);
}

#[test]
fn a_portgroup_decides_port_security_for_the_ports_that_join_it() {
    let net = Net::start_with(Some(&nat_net(
        "<portgroup name='guests' default='yes'><vnet:port-security enabled='yes'/></portgroup>\
         <portgroup name='lab'/>",
    )));
    let port = |name: &str| {
        net.port_list()
            .into_iter()
            .find(|x| x["name"] == name)
            .expect("port")
    };
    // no --portgroup: the default group's, which protects
    let (g, _, p) = guest(&net, "vpg", "52:54:00:c3:00:01", false);
    assert_eq!(port(&p)["portgroup"], "guests");
    // the table shows it too
    let table =
        String::from_utf8_lossy(&net.switchctl(&["port-list", &net.name]).stdout).into_owned();
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(p.as_str()))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(5..7), Some(&["guests", "secure"][..]), "{table}");
    assert!(ping(&g, &["192.168.122.1"]), "{}", net.log());
    g.run_ok("ip", &["addr", "add", "192.168.122.250/24", "dev", "eth0"]);
    assert!(!ping(&g, &["-I", "192.168.122.250", "192.168.122.1"]));
    assert!(drops(&net, &p, "spoofed-ip") > 0);
    // a group without the element takes the network's setting (off): the same passes
    let l = Netns::new("vpl");
    let info = add_tap(
        &net,
        &l,
        &["--mac", "52:54:00:c3:00:02", "--portgroup", "lab"],
    );
    assert_eq!(info["portgroup"], "lab", "{info}");
    assert!(info["security"].is_null(), "{info}");
    l.run_ok("ip", &["link", "set", "eth0", "up"]);
    l.run_ok("ip", &["addr", "add", "192.168.122.251/24", "dev", "eth0"]);
    assert!(ping(&l, &["192.168.122.1"]), "{}", net.log());
    // --secure and --trusted still win over the group
    let s = Netns::new("vps");
    let info = add_tap(&net, &s, &["--portgroup", "lab", "--secure"]);
    assert!(info["security"].is_object(), "{info}");
    let t = Netns::new("vpt");
    let info = add_tap(&net, &t, &["--trusted"]);
    assert_eq!(info["portgroup"], "guests", "{info}");
    assert!(info["security"].is_null(), "{info}");
    // a group the network does not have is refused, and nothing is left behind
    let before = net.port_list().len();
    let n = Netns::new("vpn");
    let e = net.ctl_err(&tap_args(&net, &n, &["--portgroup", "nope"]));
    assert!(e.contains("no portgroup \"nope\""), "{e}");
    assert_eq!(net.port_list().len(), before);
    assert!(!n.run("ip", &["link", "show", "eth0"]).status.success());
    // a QEMU stream peer names no group: it joins the default one
    let stream = net.dir.path().join(format!("{}.stream", net.name));
    let code = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect('{}')\ntime.sleep(5)",
        stream.display()
    );
    let mut cmd = net.host.cmd("python3", &["-c", &code]);
    cmd.stdout(std::process::Stdio::null());
    let _peer = ChildGuard::spawn(cmd);
    let stream_port = || net.port_list().into_iter().find(|x| x["kind"] == "stream");
    assert!(
        wait_for(Duration::from_secs(3), || stream_port().is_some()),
        "{}",
        net.log()
    );
    let sp = stream_port().expect("stream port");
    assert_eq!(sp["portgroup"], "guests", "{sp}");
    assert!(sp["security"].is_object(), "{sp}");
}
