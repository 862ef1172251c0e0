//! NAT in user space: a DHCP-configured guest on the stock default network reaches
//! servers in a "wan" namespace the test creates, through switchd's host sockets.
//!
//! Topology: switchd in `vth-*`; a veth joins it to `wan-*` (host 10.98.0.1/24, wan
//! 10.98.0.2/24); nothing else is reachable, and nothing leaves the test's namespaces.

mod common;

use std::time::{Duration, Instant};

use common::clients::udhcpc;
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
        let ns = Netns::new("nwan");
        let veth = Veth::new("vn", Some(&net.host), Some(&ns));
        net.host.run_ok(
            "ip",
            &["addr", "add", &format!("{UPLINK}/24"), "dev", veth.a()],
        );
        net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
        ns.run_ok("ip", &["addr", "add", &format!("{WAN}/24"), "dev", veth.b()]);
        ns.run_ok("ip", &["link", "set", veth.b(), "up"]);
        Self {
            servers: Vec::new(),
            _veth: veth,
            ns,
        }
    }

    fn serve(&mut self, prog: &str, args: &[&str]) {
        self.servers.push(ChildGuard::spawn(self.ns.cmd(prog, args)));
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
    let probe = format!(
        "import socket\ns=socket.socket()\ns.settimeout(0.2)\ns.connect(('{WAN}',{port}))"
    );
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

    // a 100 MB file over HTTP, checked by sha256
    let dir = net.dir.path().join("www");
    std::fs::create_dir_all(&dir).expect("www");
    let file = dir.join("big.bin");
    let st = std::process::Command::new("head")
        .args(["-c", "100M", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).expect("big.bin"))
        .status()
        .expect("head");
    assert!(st.success());
    let log = net.dir.path().join("http.log");
    let mut http = wan.ns.cmd(
        "python3",
        &["-m", "http.server", "8000", "--bind", WAN, "--directory"],
    );
    http.arg(&dir)
        .stderr(std::fs::File::create(&log).expect("log"));
    wan.servers.push(ChildGuard::spawn(http));
    wait_port(&wan.ns, 8000);
    let out = g.run(
        "sh",
        &[
            "-c",
            &format!("curl -sS --max-time 120 http://{WAN}:8000/big.bin | sha256sum"),
        ],
    );
    let want = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("sha256sum");
    let got = String::from_utf8_lossy(&out.stdout);
    let want = String::from_utf8_lossy(&want.stdout);
    assert_eq!(
        got.split_whitespace().next(),
        want.split_whitespace().next(),
        "download corrupted or failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log()
    );
    // the wan server saw the host's uplink address
    let served = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(served.contains(UPLINK), "{served}");

    // iperf3 both ways
    wan.serve("iperf3", &["-s", "-B", WAN, "-p", "5201"]);
    wait_port(&wan.ns, 5201);
    for reverse in [false, true] {
        let mut a = vec!["-c", WAN, "-p", "5201", "-t", "2", "-J"];
        if reverse {
            a.push("-R");
        }
        let out = g.run("iperf3", &a);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(bps > 0.0, "iperf3 reverse={reverse}: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("iperf3 through NAT, reverse={reverse}: {:.2} Gbit/s", bps / 1e9);
    }

    // UDP echo
    wan.serve(
        "python3",
        &[
            "-c",
            &format!(
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{WAN}',7007))\n\
                 while True:\n    d,a=s.recvfrom(2048)\n    s.sendto(d.upper()+a[0].encode(),a)\n"
            ),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = py(
        &g,
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n\
             s.sendto(b'hello',('{WAN}',7007))\nprint(s.recvfrom(2048)[0].decode())"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("HELLO{UPLINK}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
        flows
            .as_array()
            .is_some_and(|f| f.iter().any(|r| r["proto"] == "udp" && r["remote"] == format!("{WAN}:7007"))),
        "{flows}"
    );
}

#[test]
fn refused_and_unreachable_fail_fast_and_500_connections_complete() {
    let net = Net::start();
    let mut wan = Wan::new(&net);
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
    wan.serve(
        "python3",
        &[
            "-c",
            &format!(
                "import asyncio\n\
                 async def h(r,w):\n    d=await r.read(100)\n    w.write(d)\n    await w.drain()\n    w.close()\n\
                 async def m():\n    s=await asyncio.start_server(h,'{WAN}',7100,backlog=1024)\n    await s.serve_forever()\n\
                 asyncio.run(m())\n"
            ),
        ],
    );
    wait_port(&wan.ns, 7100);
    let out = py(
        &g,
        &format!(
            "import asyncio\n\
             async def c(i):\n    r,w=await asyncio.open_connection('{WAN}',7100)\n    w.write(b'x%d'%i)\n    await w.drain()\n    d=await r.read(100)\n    w.close()\n    return d==b'x%d'%i\n\
             async def m():\n    return await asyncio.gather(*[c(i) for i in range(500)])\n\
             print(sum(asyncio.run(asyncio.wait_for(m(),60))))\n"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "500",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log()
    );
}

#[test]
fn the_gateway_address_reaches_the_hosts_loopback() {
    let net = Net::start();
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
