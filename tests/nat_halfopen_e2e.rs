//! Issue #17: a SYN scan from one guest must not cut another guest off from the remote
//! it scanned. Guest A sends raw SYNs (its kernel holds no socket for them, so it
//! resets every SYN-ACK the NAT answers with); each left a smoltcp socket listening on
//! the remote's address, which then took guest B's SYNs to that remote.
//!
//! Topology: switchd in `vth-*` running the stock NAT network (192.168.122.0/24); two
//! guest namespaces on TAP ports with static addresses; a veth joins switchd's
//! namespace to `hwan-*` (host 198.18.17.1/24, wan 198.18.17.2/24), where a TCP server
//! listens. Nothing else is reachable, and nothing leaves the test's namespaces.

mod common;

use std::time::Duration;

use common::Net;
use vnet_testkit::{ChildGuard, Netns, Veth};

const WAN: &str = "198.18.17.2";
const UPLINK: &str = "198.18.17.1";
const PORT: u16 = 8081;
const GW: &str = "192.168.122.1";

/// Raw SYNs to `argv[2]:argv[3]` from random source ports, `argv[4]` per second for
/// `argv[5]` seconds (at most rate × seconds of them); prints how many went.
const SYN_FLOOD: &str = r"
import random, socket, struct, sys, time
src, dst, dport, rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, 20)
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
n, start = 0, time.monotonic()
while n < rate * secs and time.monotonic() - start < secs:
    h = struct.pack('!HHIIBBHHH', random.randint(20000, 60000), dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    h = h[:16] + struct.pack('!H', csum(pseudo + h)) + h[18:]
    s.sendto(h, (dst, 0))
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(n)
";

/// Connects to `argv[1]:argv[2]` `argv[3]` times in a row, each connect and greeting
/// within 2 s; prints one line per failure and then `ok N`.
const CONNECTS: &str = r"
import socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(count):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((dst, port))
        got = s.recv(16)
        if got == b'hello':
            ok += 1
        else:
            print('connection', i, 'got', got)
    except OSError as e:
        print('connection', i, 'failed:', e)
    s.close()
print('ok', ok)
";

/// A TCP server: greets every connection with `hello` and closes it.
const SERVER: &str = r"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1024)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b'hello')
    except OSError:
        pass
    c.close()
";

/// The wan namespace, joined to switchd's namespace by a veth; removed when dropped
/// (server first, then the veth, then the namespace).
struct Wan {
    _server: ChildGuard,
    _veth: Veth,
    _ns: Netns,
}

impl Wan {
    fn new(net: &Net) -> Self {
        let (ns, veth) = net.wan("vh", UPLINK, WAN);
        let server = ChildGuard::spawn(ns.cmd("python3", &["-c", SERVER, WAN, &PORT.to_string()]));
        assert!(
            ns.wait_listening(PORT, Duration::from_secs(5)),
            "the wan server did not start"
        );
        Self {
            _server: server,
            _veth: veth,
            _ns: ns,
        }
    }
}

/// A guest namespace on a TAP port of `net` with static address `ip` and the gateway
/// as its default route.
fn guest(net: &Net, prefix: &str, mac: &str, ip: &str) -> Netns {
    let ns = net.add_bare_guest(prefix, mac);
    ns.run_ok("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    ns.run_ok("ip", &["route", "add", "default", "via", GW]);
    ns
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_syn_scan_from_one_guest_leaves_another_guest_connecting_to_the_same_remote() {
    let net = Net::start();
    let _wan = Wan::new(&net);
    let a = guest(&net, "vhsa", "52:54:00:17:00:01", "192.168.122.50");
    let b = guest(&net, "vhsb", "52:54:00:17:00:02", "192.168.122.51");
    let port = PORT.to_string();
    // the path works before the scan
    let out = b.run("python3", &["-c", CONNECTS, WAN, &port, "1"]);
    assert_eq!(
        stdout(&out),
        "ok 1",
        "before the scan: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log()
    );

    // 10 s of raw SYNs from A at 300 per second
    let out = a.run(
        "python3",
        &["-c", SYN_FLOOD, "192.168.122.50", WAN, &port, "300", "10"],
    );
    assert!(
        out.status.success(),
        "the SYN flood did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: u32 = stdout(&out).parse().unwrap_or(0);
    assert!(sent >= 1000, "only {sent} SYNs went out");
    let info = net.ctl_json(&["net-info", &net.name]);
    let opened = info["live"]["gateway"]["nat"]["tcp_flows"]
        .as_u64()
        .unwrap_or(0);
    assert!(opened >= 500, "the scan opened {opened} NAT flows: {info}");

    // B connects to the scanned remote, 20 times in a row, each at once
    let out = b.run("python3", &["-c", CONNECTS, WAN, &port, "20"]);
    let said = stdout(&out);
    let flows = net.ctl_json(&["nat-flows", &net.name]);
    assert!(
        said.ends_with("ok 20"),
        "B after A's scan ({sent} SYNs):\n{said}\n{}\nflows: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        flows.as_array().map_or(0, Vec::len),
        net.log()
    );
    // and no flow of the scan is left listening on the remote's address
    let listening = flows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["state"] == "listen")
        .count();
    assert_eq!(listening, 0, "{flows}");
}
