//! Port security (`port-add --secure`): a protected guest can send only as itself — its
//! MAC, the address vnet leased it, ARP naming itself, no DHCP server — and the same
//! traffic from an unprotected guest passes.

mod common;

use std::time::Duration;

use common::clients::udhcpc;
use common::Net;
use vnet_testkit::{wait_for, ChildGuard, Netns};

fn guest(net: &Net, prefix: &str, mac: &str, secure: bool) -> (Netns, String, String) {
    let ns = Netns::new(prefix);
    let mut args = vec![
        "port-add",
        &net.name,
        "tap",
        "--netns",
        ns.name(),
        "--ifname",
        "eth0",
        "--mac",
        mac,
    ];
    if secure {
        args.push("--secure");
    }
    let info = net.ctl_json(&args);
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
