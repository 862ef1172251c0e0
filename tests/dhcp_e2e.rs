//! The gateway and its DHCP server against real clients: busybox `udhcpc`, ISC
//! `dhclient` and `dhcpcd` in guest namespaces, on libvirt's stock default network
//! (192.168.122.0/24, gateway .1, DHCP .2–.254) and on networks the tests define.

mod common;

use std::time::Duration;

use common::clients::{dhclient, dhclient_release, dhcpcd, udhcpc};
use common::Net;
use vnet_testkit::wait_for;

fn in_default_range(ip: &str) -> bool {
    let Ok(a) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let o = a.octets();
    o[..3] == [192, 168, 122] && (2..=254).contains(&o[3])
}

#[test]
fn udhcpc_dhclient_and_dhcpcd_get_leases_on_the_default_network() {
    let net = Net::start();
    let vm1 = net.add_bare_guest("vdg1", "52:54:00:10:00:01");
    let vm2 = net.add_bare_guest("vdg2", "52:54:00:10:00:02");
    let vm3 = net.add_bare_guest("vdg3", "52:54:00:10:00:03");

    let a = udhcpc(&net, &vm1, "vm1", &["-x", "hostname:vm1"]);
    assert!(in_default_range(&a["ip"]), "udhcpc: {a:?}\n{}", net.log());
    assert_eq!(a["router"], "192.168.122.1");
    assert_eq!(a["dns"], "192.168.122.1");
    assert_eq!(a["mask"], "24");
    assert_eq!(a["serverid"], "192.168.122.1");
    assert_eq!(a["lease"], "3600", "libvirt's default lease is 1 h");

    let b = dhclient(&net, &vm2, "vm2");
    assert!(in_default_range(&b["ip"]), "dhclient: {b:?}\n{}", net.log());
    assert_eq!(b["router"], "192.168.122.1");
    assert_eq!(b["dns"], "192.168.122.1");

    let c = dhcpcd(&net, &vm3, "vm3");
    assert!(in_default_range(&c["ip"]), "dhcpcd: {c:?}\n{}", net.log());
    assert_eq!(c["router"], "192.168.122.1");

    let ips = [&a["ip"], &b["ip"], &c["ip"]];
    assert!(
        ips[0] != ips[1] && ips[1] != ips[2] && ips[0] != ips[2],
        "{ips:?}"
    );
    // the guests reach each other and the gateway by the addresses they were given
    assert!(vm1
        .run("ping", &["-c", "1", "-W", "2", &b["ip"]])
        .status
        .success());
    assert!(vm2
        .run("ping", &["-c", "1", "-W", "2", &a["ip"]])
        .status
        .success());
    assert!(
        vm1.run("ping", &["-c", "1", "-W", "2", "192.168.122.1"])
            .status
            .success(),
        "gateway ping"
    );

    // net-dhcp-leases shows them, with the hostname udhcpc sent
    let rows = net.ctl_json(&["net-dhcp-leases", &net.name]);
    let rows = rows.as_array().expect("rows");
    let row = rows
        .iter()
        .find(|r| r["mac"] == "52:54:00:10:00:01")
        .expect("vm1's lease");
    assert_eq!(row["ip"], format!("{}/24", a["ip"]).as_str());
    assert_eq!(row["hostname"], "vm1");
    assert!(rows.iter().any(|r| r["mac"] == "52:54:00:10:00:02"));
    let log = net.log();
    assert!(
        log.contains(&format!(
            "DHCPACK({}) {} 52:54:00:10:00:01 vm1",
            net.name, a["ip"]
        )),
        "{log}"
    );
}

const CUSTOM: &str = "<network>
  <name>custom</name>
  <forward mode='nat'/>
  <mtu size='9000'/>
  <domain name='example.test'/>
  <ip address='10.66.0.1' prefix='24'>
    <dhcp>
      <range start='10.66.0.100' end='10.66.0.101'>
        <lease expiry='10' unit='minutes'/>
      </range>
      <host mac='52:54:00:20:00:09' name='reserved' ip='10.66.0.50'>
        <lease expiry='2' unit='hours'/>
      </host>
    </dhcp>
  </ip>
</network>";

#[test]
fn reservation_mtu_domain_and_lease_times() {
    let net = Net::start_with(Some(CUSTOM));
    let res = net.add_bare_guest("vdr", "52:54:00:20:00:09");
    let r = udhcpc(&net, &res, "res", &[]);
    assert_eq!(
        r.get("ip").map(String::as_str),
        Some("10.66.0.50"),
        "{r:?}\n{}",
        net.log()
    );
    assert_eq!(r["hostname"], "reserved");
    assert_eq!(r["domain"], "example.test");
    assert_eq!(r["mtu"], "9000");
    assert_eq!(r["lease"], "7200");
    let link = res.run_ok("ip", &["-o", "link", "show", "eth0"]);
    assert!(
        link.contains("mtu 9000"),
        "the guest interface ends at 9000: {link}"
    );

    let dyn1 = net.add_bare_guest("vdd", "52:54:00:20:00:01");
    let d = dhclient(&net, &dyn1, "dyn");
    assert!(
        ["10.66.0.100", "10.66.0.101"].contains(&d["ip"].as_str()),
        "{d:?}"
    );
    assert_eq!(d["mtu"], "9000");
    assert_eq!(d["domain"], "example.test");
    // the reserved guest and the dynamic one talk at MTU 9000
    assert!(res
        .run(
            "ping",
            &["-c", "1", "-W", "2", "-s", "8000", "-M", "do", &d["ip"]]
        )
        .status
        .success());
}

#[test]
fn pool_exhaustion_release_and_decline() {
    let net = Net::start_with(Some(CUSTOM));
    let g1 = net.add_bare_guest("vde1", "52:54:00:30:00:01");
    let g2 = net.add_bare_guest("vde2", "52:54:00:30:00:02");
    let g3 = net.add_bare_guest("vde3", "52:54:00:30:00:03");
    let a = dhclient(&net, &g1, "g1");
    let b = dhclient(&net, &g2, "g2");
    assert!(a.contains_key("ip") && b.contains_key("ip"), "{a:?} {b:?}");
    assert_ne!(a["ip"], b["ip"]);

    // the two-address pool is exhausted: no offer for g3, a log line, the others served
    let c = udhcpc(&net, &g3, "g3", &[]);
    assert!(c.is_empty(), "no lease expected: {c:?}");
    assert!(net.log().contains("no address available"), "{}", net.log());
    let again = dhclient(&net, &g1, "g1");
    assert_eq!(
        again.get("ip"),
        a.get("ip"),
        "a known client is still served"
    );

    // RELEASE returns the address to the pool: g1 releases, g3 gets it
    dhclient_release(&net, &g1, "g1");
    assert!(net.log().contains("DHCPRELEASE"), "{}", net.log());
    let c = dhclient(&net, &g3, "g3");
    assert_eq!(
        c.get("ip"),
        a.get("ip"),
        "released address reused: {}",
        net.log()
    );

    // DECLINE: g3 releases the address again, g2 squats on it statically; g1 (udhcpc
    // with ARP checking) is offered it, sees the squatter's ARP reply and declines it.
    dhclient_release(&net, &g3, "g3");
    let squat = a["ip"].clone();
    g2.run_ok(
        "ip",
        &["addr", "add", &format!("{squat}/32"), "dev", "eth0"],
    );
    let d = udhcpc(&net, &g1, "g1d", &["-a", "2000"]);
    let log = net.log();
    assert!(
        log.contains(&format!("DHCPDECLINE({}) {squat}", net.name)),
        "udhcpc -a should decline {squat}: {log}"
    );
    assert_ne!(
        d.get("ip"),
        Some(&squat),
        "declined address handed out again"
    );
    // quarantined: a fresh client is not offered it either
    let e = udhcpc(&net, &g3, "g3e", &[]);
    assert_ne!(
        e.get("ip"),
        Some(&squat),
        "declined address handed out again: {}",
        net.log()
    );
}

#[test]
fn leases_survive_a_clean_restart_and_kill_9() {
    let mut net = Net::start();
    let mac = "52:54:00:40:00:01";
    let g = net.add_bare_guest("vdk", mac);
    let first = dhclient(&net, &g, "k");
    assert!(in_default_range(&first["ip"]), "{first:?}");
    let mut rows_before = net.ctl_json(&["net-dhcp-leases", &net.name]);
    for crash in [false, true] {
        net.stop(crash);
        net.launch();
        let rows_after = net.ctl_json(&["net-dhcp-leases", &net.name]);
        assert_eq!(rows_after, rows_before, "crash={crash}");
        // the TAP went with the old process; attach the guest again, same MAC
        net.ctl_json(&[
            "port-add",
            &net.name,
            "tap",
            "--netns",
            g.name(),
            "--ifname",
            "eth0",
            "--mac",
            mac,
        ]);
        g.run_ok("ip", &["link", "set", "eth0", "up"]);
        // dhclient reboots with its lease file: INIT-REBOOT for the same address, ACKed
        let again = dhclient(&net, &g, "k");
        assert_eq!(
            again.get("ip"),
            first.get("ip"),
            "crash={crash}: {again:?}\n{}",
            net.log()
        );
        // the renewal moved the expiry: that is what the next restart must keep
        rows_before = net.ctl_json(&["net-dhcp-leases", &net.name]);
    }
}

#[test]
fn foreign_address_is_naked_and_bad_packets_are_dropped_and_counted() {
    let net = Net::start();
    let g = net.add_bare_guest("vdn", "52:54:00:50:00:01");
    // a lease file for an address of another network: dhclient asks for it (INIT-REBOOT)
    let lf = net.dir.path().join("dhclient-n.leases");
    std::fs::write(
        &lf,
        "lease {\n  interface \"eth0\";\n  fixed-address 10.9.9.9;\n  option subnet-mask 255.255.255.0;\n  \
         option dhcp-server-identifier 10.9.9.1;\n  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  \
         expire 4 2037/01/01 00:00:00;\n}\n",
    )
    .expect("lease file");
    let got = dhclient(&net, &g, "n");
    assert!(net.log().contains("DHCPNAK"), "{}", net.log());
    assert!(
        in_default_range(&got["ip"]),
        "after the NAK a fresh lease: {got:?}"
    );

    // malformed and truncated DHCP payloads to the gateway's port 67
    let before = net.ctl_json(&["net-info", &net.name])["live"]["gateway"]["dhcp_dropped"].as_u64();
    let py = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
              s.bind(('0.0.0.0',68))\n\
              for p in [b'', b'\\x01', b'\\x02'*300, b'\\x01\\x01\\x06\\x00'+b'\\xff'*20]:\n    s.sendto(p,('192.168.122.1',67))\n";
    g.run_ok("python3", &["-c", py]);
    let dropped =
        || net.ctl_json(&["net-info", &net.name])["live"]["gateway"]["dhcp_dropped"].as_u64();
    assert!(
        wait_for(Duration::from_secs(3), || dropped()
            >= before.map(|b| b + 4)),
        "dropped: {:?} -> {:?}",
        before,
        dropped()
    );
    // still serving
    let again = udhcpc(&net, &g, "n2", &[]);
    assert!(
        again.get("ip").is_some_and(|ip| in_default_range(ip)),
        "{again:?}"
    );
}

#[test]
fn an_address_a_guest_uses_statically_is_not_offered() {
    let net = Net::start();
    // a guest configured by hand with the first address of the pool, which it uses
    let fixed = net.add_bare_guest("vds", "52:54:00:60:00:01");
    fixed.run_ok("ip", &["addr", "add", "192.168.122.2/24", "dev", "eth0"]);
    assert!(
        fixed
            .run("ping", &["-c", "1", "-W", "2", "192.168.122.1"])
            .status
            .success(),
        "{}",
        net.log()
    );
    // a DHCP client arriving later is offered another address, at once (no ping delay)
    let g = net.add_bare_guest("vdc", "52:54:00:60:00:02");
    let got = udhcpc(&net, &g, "c", &[]);
    assert!(in_default_range(&got["ip"]), "{got:?}");
    assert_ne!(got["ip"], "192.168.122.2", "{}", net.log());
}

#[test]
fn one_port_cannot_take_the_pool_with_made_up_macs() {
    let net = Net::start_with_args(None, &["--dhcp-max-clients-per-port", "3"]);
    let g = net.add_bare_guest("vdcap", "52:54:00:31:00:01");
    let mut got = Vec::new();
    for i in 1..=4u8 {
        g.run_ok("ip", &["link", "set", "eth0", "down"]);
        g.run_ok(
            "ip",
            &[
                "link",
                "set",
                "eth0",
                "address",
                &format!("52:54:00:31:00:{i:02x}"),
            ],
        );
        g.run_ok("ip", &["link", "set", "eth0", "up"]);
        got.push(udhcpc(&net, &g, &format!("cap{i}"), &[]).contains_key("ip"));
    }
    assert_eq!(got, [true, true, true, false], "{}", net.log());
    let dhcp = net.ctl_json(&["stats", &net.name])["dhcp"].clone();
    assert!(dhcp["port_capped"].as_u64() >= Some(1), "{dhcp}");
    // another port is served
    let other = net.add_bare_guest("vdcap2", "52:54:00:31:00:99");
    assert!(udhcpc(&net, &other, "capo", &[]).contains_key("ip"));
}
