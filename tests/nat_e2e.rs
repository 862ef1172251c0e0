//! NAT in user space: a DHCP-configured guest on the stock default network reaches
//! servers in a "wan" namespace the test creates, through switchd's host sockets.
//!
//! Topology: switchd in `vth-*`; a veth joins it to `wan-*` (host 10.98.0.1/24, wan
//! 10.98.0.2/24); nothing else is reachable, and nothing leaves the test's namespaces.

mod common;

use std::time::{Duration, Instant};

use common::clients::udhcpc;
use common::wan as load;
use common::Net;
use vnet_testkit::{wait_for, ChildGuard, Netns, Veth};

const WAN: &str = "10.98.0.2";
const UPLINK: &str = "10.98.0.1";

struct Wan {
    servers: Vec<ChildGuard>,
    _veth: Veth,
    ns: Netns,
}

impl Wan {
    fn new(net: &Net) -> Self {
        let (ns, veth) = net.wan("vn", UPLINK, WAN);
        Self {
            servers: Vec::new(),
            _veth: veth,
            ns,
        }
    }

    fn serve(&mut self, prog: &str, args: &[&str]) {
        self.servers
            .push(ChildGuard::spawn(self.ns.cmd(prog, args)));
    }
}

/// A guest on the network with an address, router and DNS from DHCP.
fn dhcp_guest(net: &Net, prefix: &str, mac: &str) -> (Netns, String) {
    let g = net.add_bare_guest(prefix, mac);
    let lease = udhcpc(net, &g, prefix, &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(!ip.is_empty(), "no lease: {}", net.log());
    (g, ip)
}

fn py(ns: &Netns, code: &str) -> std::process::Output {
    ns.run("python3", &["-c", code])
}

fn wait_port(ns: &Netns, port: u16) {
    let probe =
        format!("import socket\ns=socket.socket()\ns.settimeout(0.2)\ns.connect(('{WAN}',{port}))");
    assert!(
        wait_for(Duration::from_secs(5), || py(ns, &probe).status.success()),
        "wan server on port {port} did not start"
    );
}

#[test]
fn guest_reaches_the_wan_over_tcp_udp_and_icmp_from_the_hosts_address() {
    let net = Net::start();
    let mut wan = Wan::new(&net);
    let (g, _ip) = dhcp_guest(&net, "vnn1", "52:54:00:80:00:01");

    // a 100 MB file over HTTP, checked by sha256; the wan server saw the host's
    // uplink address
    let (got, want, err, served) = load::big_download(net.dir.path(), &g, &wan.ns, WAN);
    assert_eq!(
        got,
        want,
        "download corrupted or failed: {err}\n{}",
        net.log()
    );
    assert!(served.contains(UPLINK), "{served}");

    // iperf3 both ways; UDP echo: the wan sees the host's address
    load::iperf_both_ways(&g, &wan.ns, WAN, 5201);
    if std::env::var_os("VNET_DEBUG").is_some() {
        eprintln!("{}", net.ctl_json(&["port-list", &net.name]));
        eprintln!(
            "{}",
            String::from_utf8_lossy(&g.run("nstat", &["-a"]).stdout)
        );
    }
    wan.servers.push(load::udp_echo(&wan.ns, WAN, 7007));
    assert_eq!(
        load::udp_ask(&g, WAN, 7007, None, "hello"),
        format!("HELLO{UPLINK}")
    );

    // ping
    assert!(
        g.run("ping", &["-c", "2", "-W", "2", WAN]).status.success(),
        "ping through NAT: {}",
        net.log()
    );

    // flows are visible
    let flows = net.ctl_json(&["nat-flows", &net.name]);
    assert!(
        flows.as_array().is_some_and(|f| f
            .iter()
            .any(|r| r["proto"] == "udp" && r["remote"] == format!("{WAN}:7007"))),
        "{flows}"
    );
}

#[test]
fn refused_and_unreachable_fail_fast_and_500_connections_complete() {
    let net = Net::start();
    let wan = Wan::new(&net);
    let (g, _) = dhcp_guest(&net, "vnr1", "52:54:00:81:00:01");

    // a refused port: "connection refused" at once
    let t = Instant::now();
    let out = py(
        &g,
        &format!(
            "import socket\ns=socket.socket()\ns.settimeout(10)\n\
             try:\n    s.connect(('{WAN}',9))\nexcept ConnectionRefusedError:\n    print('refused')\n"
        ),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
    assert!(t.elapsed() < Duration::from_secs(5));

    // an unreachable host: an error, not a hang
    let out = py(
        &g,
        "import socket\ns=socket.socket()\ns.settimeout(30)\n\
         try:\n    s.connect(('10.98.0.77',80))\nexcept socket.timeout:\n    print('hang')\n\
         except OSError as e:\n    print('error', e.errno)\n",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("error"), "{said}");

    // 500 concurrent connections through NAT to an echo server
    assert_eq!(
        load::concurrent_echo(&g, &wan.ns, WAN, 7100, 500),
        "500",
        "{}",
        net.log()
    );
}

#[test]
fn the_gateway_address_reaches_the_hosts_loopback() {
    // without a host port (with one, the host kernel itself answers the gateway address)
    let net = Net::start_with(Some(
        "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'><name>lo</name><forward/>\
         <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
         <range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>\
         <vnet:host-port enabled='no'/></network>",
    ));
    let (g, _) = dhcp_guest(&net, "vnh1", "52:54:00:82:00:01");
    let _svc = ChildGuard::spawn(net.host.cmd(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('127.0.0.1',8022))\ns.listen()\n\
             while True:\n    c,a=s.accept()\n    c.sendall(b'host says hi to '+a[0].encode())\n    c.close()\n",
        ],
    ));
    let probe = "import socket\ns=socket.socket()\ns.settimeout(3)\ns.connect(('192.168.122.1',8022))\nprint(s.recv(100).decode())";
    assert!(
        wait_for(Duration::from_secs(5), || String::from_utf8_lossy(
            &py(&g, probe).stdout
        )
        .contains("host says hi to 127.0.0.1")),
        "{}",
        net.log()
    );
}

const FWD_NET: &str = "<network xmlns:vnet='https://vnet.dev/xmlns/network/1'>
  <name>fwd</name>
  <forward mode='nat'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
      <host mac='52:54:00:83:00:01' ip='192.168.122.10'/>
    </dhcp>
  </ip>
  <vnet:port-forward proto='tcp' port='8080' to='192.168.122.10' to-port='80'/>
  <vnet:host-access enabled='no'/>
</network>";

/// A TCP server in `ns` on `port` that answers each connection with the address it saw.
fn whoami_tcp(ns: &Netns, port: u16) -> ChildGuard {
    ChildGuard::spawn(ns.cmd(
        "python3",
        &[
            "-c",
            &format!(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('0.0.0.0',{port}))\ns.listen(64)\n\
                 while True:\n    c,a=s.accept()\n    c.sendall(('you are '+a[0]).encode())\n    c.close()\n"
            ),
        ],
    ))
}

fn tcp_ask(ns: &Netns, addr: &str, port: u16) -> String {
    let out = py(
        ns,
        &format!(
            "import socket\ns=socket.socket()\ns.settimeout(3)\n\
             try:\n    s.connect(('{addr}',{port}))\n    print(s.recv(100).decode())\n\
             except ConnectionRefusedError:\n    print('refused')\nexcept OSError as e:\n    print('error',e)\n"
        ),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn port_forwards_reach_the_guest_and_change_live() {
    let net = Net::start_with(Some(FWD_NET));
    let wan = Wan::new(&net);
    let (g, ip) = dhcp_guest(&net, "vnp1", "52:54:00:83:00:01");
    assert_eq!(ip, "192.168.122.10");
    let _web = whoami_tcp(&g, 80);
    std::thread::sleep(Duration::from_millis(300));
    // a wan client reaches the guest through the host's uplink address; the guest sees
    // the real client address
    assert!(
        wait_for(Duration::from_secs(5), || tcp_ask(&wan.ns, UPLINK, 8080)
            == format!("you are {WAN}")),
        "{}\n{}",
        tcp_ask(&wan.ns, UPLINK, 8080),
        net.log()
    );

    // a live UDP forward
    let _echo = ChildGuard::spawn(g.cmd(
        "python3",
        &[
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5001))\n\
             while True:\n    d,a=s.recvfrom(2048)\n    s.sendto(d+b' from '+a[0].encode(),a)\n",
        ],
    ));
    net.ctl_json(&[
        "port-forward-add",
        &net.name,
        "udp:5000:192.168.122.10:5001",
    ]);
    let list = net.ctl_json(&["port-forward-list", &net.name]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let udp = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
         s.sendto(b'ping',('{UPLINK}',5000))\nprint(s.recvfrom(100)[0].decode())"
    );
    // (retried: the guest's echo server may still be starting)
    let want = format!("ping from {WAN}");
    assert!(
        wait_for(Duration::from_secs(10), || String::from_utf8_lossy(
            &py(&wan.ns, &udp).stdout
        )
        .trim()
            == want),
        "no UDP answer through the forward: {}",
        net.log()
    );
    // a live delete: the host port closes at once
    net.ctl_json(&["port-forward-del", &net.name, "tcp:8080"]);
    assert_eq!(tcp_ask(&wan.ns, UPLINK, 8080), "refused");

    // host access is off in this network: the gateway address does not lead to the host
    let _svc = whoami_tcp(&net.host, 8022);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tcp_ask(&g, "192.168.122.1", 8022), "refused");
}

#[test]
fn a_guest_past_its_flow_bound_is_refused_and_others_are_not() {
    let net = Net::start_with_args(None, &["--nat-max-flows-per-guest", "20"]);
    let mut wan = Wan::new(&net);
    let (greedy, _) = dhcp_guest(&net, "vnb1", "52:54:00:84:00:01");
    let (other, _) = dhcp_guest(&net, "vnb2", "52:54:00:84:00:02");
    wan.serve(
        "python3",
        &[
            "-c",
            &format!(
                "import socket,threading\ns=socket.socket()\ns.bind(('{WAN}',7200))\ns.listen(128)\n\
                 held=[]\nwhile True:\n    c,a=s.accept()\n    held.append(c)\n"
            ),
        ],
    );
    wait_port(&wan.ns, 7200);
    // hold 25 connections open: 20 get through, the rest are refused
    let out = py(
        &greedy,
        &format!(
            "import socket\nok=0\nrefused=0\nheld=[]\n\
             for i in range(25):\n    s=socket.socket()\n    s.settimeout(5)\n\
             \x20   try:\n        s.connect(('{WAN}',7200))\n        ok+=1\n        held.append(s)\n\
             \x20   except ConnectionRefusedError:\n        refused+=1\n\
             print(ok,refused)\n"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "20 5",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = net.ctl_json(&["net-info", &net.name]);
    assert!(
        info["live"]["gateway"]["nat"]["refused_limit"].as_u64() >= Some(5),
        "{info}"
    );
    // the other guest is unaffected
    let probe = format!(
        "import socket\ns=socket.socket()\ns.settimeout(3)\ns.connect(('{WAN}',7200))\nprint('ok')"
    );
    assert_eq!(
        String::from_utf8_lossy(&py(&other, &probe).stdout).trim(),
        "ok"
    );
}

#[test]
fn an_unprivileged_switchd_still_provides_nat() {
    vnet_testkit::require_root();
    let dir = vnet_testkit::TempDir::new("vnet-unpriv");
    let host = Netns::new("vuh");
    let guest = Netns::new("vug");
    let wan = Netns::new("vuw");
    let veth = Veth::new("vu", Some(&host), Some(&wan));
    host.run_ok(
        "ip",
        &["addr", "add", &format!("{UPLINK}/24"), "dev", veth.a()],
    );
    host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    wan.run_ok(
        "ip",
        &["addr", "add", &format!("{WAN}/24"), "dev", veth.b()],
    );
    wan.run_ok("ip", &["link", "set", veth.b(), "up"]);
    // root prepares a TAP owned by nobody; switchd runs as nobody and attaches to it
    let tap = format!("vut{}", vnet_testkit::unique());
    host.run_ok(
        "ip",
        &[
            "tuntap", "add", "mode", "tap", "vnet_hdr", "user", "nobody", "name", &tap,
        ],
    );
    let name = format!("u{}", vnet_testkit::unique());
    let (_switchd, log) = common::unprivileged_switchd(&host, dir.path(), &name);
    let ctl = |args: &[&str]| {
        std::process::Command::new(common::SWITCHCTL)
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .args(args)
            .output()
            .expect("switchctl")
    };
    assert!(
        wait_for(Duration::from_secs(10), || ctl(&["net-info", &name])
            .status
            .success()),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out = ctl(&["port-add", &name, "tap", "--name", &tap, "--attach"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // the device moves into the guest namespace; switchd's descriptor keeps working
    host.run_ok("ip", &["link", "set", &tap, "netns", guest.name()]);
    guest.run_ok("ip", &["link", "set", &tap, "up"]);
    guest.run_ok("ip", &["addr", "add", "192.168.122.77/24", "dev", &tap]);
    guest.run_ok("ip", &["route", "add", "default", "via", "192.168.122.1"]);
    let _web = whoami_tcp(&wan, 8081);
    assert!(
        wait_for(Duration::from_secs(5), || tcp_ask(&guest, WAN, 8081)
            == format!("you are {UPLINK}")),
        "{}\n{}",
        tcp_ask(&guest, WAN, 8081),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", _switchd.id())).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "switchd runs as nobody: {status}"
    );
}
