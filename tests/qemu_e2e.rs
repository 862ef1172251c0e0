//! Real QEMU guests (Debian kernel, busybox initramfs, TCG) on a vnet network, one per
//! attach method: `-netdev stream` and `-netdev dgram` on switchd's sockets, `-netdev
//! tap` attached by vnet's own `vnet-ifup`/`vnet-ifdown` scripts, and `-netdev
//! vhost-user` on a vhost-user port's socket. Each takes a DHCP lease,
//! resolves and pings a namespace guest and the other QEMU guests by name, and fetches a
//! file over HTTP from a "wan" namespace through NAT. Nothing leaves the test's
//! namespaces and temporary directories.

mod common;

use std::path::Path;
use std::time::Duration;

use common::qemu::{
    guest_image, netdev_dgram, netdev_stream, vhost_user_nic, virtio_net, QemuGuest,
};
use common::{Net, SWITCHCTL};
use vnet_testkit::{unique, wait_for, ChildGuard, Netns, Veth};

const WAN: &str = "10.98.0.2";
const BOOT: Duration = Duration::from_secs(180);

/// The wan: a veth from the switchd namespace (10.98.0.1) to a namespace (10.98.0.2)
/// serving `dir` over HTTP on port 8000.
struct Wan {
    _http: ChildGuard,
    _veth: Veth,
    _ns: Netns,
}

fn wan(net: &Net, dir: &Path) -> Wan {
    let ns = Netns::new("vqw");
    let veth = Veth::new("vq", Some(&net.host), Some(&ns));
    net.host
        .run_ok("ip", &["addr", "add", "10.98.0.1/24", "dev", veth.a()]);
    net.host.run_ok("ip", &["link", "set", veth.a(), "up"]);
    ns.run_ok(
        "ip",
        &["addr", "add", &format!("{WAN}/24"), "dev", veth.b()],
    );
    ns.run_ok("ip", &["link", "set", veth.b(), "up"]);
    let mut cmd = ns.cmd(
        "python3",
        &["-m", "http.server", "8000", "--bind", WAN, "--directory"],
    );
    cmd.arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let http = ChildGuard::spawn(cmd);
    Wan {
        _http: http,
        _veth: veth,
        _ns: ns,
    }
}

/// The guest's script: a lease under `name`; then the namespace guest and `others` by
/// name (DNS on the gateway), pinged; then the wan file's md5 over HTTP through NAT. It
/// prints [`CHECKS_DONE`] and stays up, so the others can still reach it whenever they get
/// there (TCG boots vary by tens of seconds); the test kills it.
fn script(name: &str, others: &[&str]) -> String {
    let mut s = format!(
        "udhcpc -i eth0 -x hostname:{name} -t 20 -T 1 -A 1 -n -q || exit 1\n\
         look() {{ nslookup \"$1\" 192.168.122.1 2>/dev/null | awk '/^Address: /{{print $2}}' | tail -n 1; }}\n\
         for i in $(seq 40); do ip=$(look nsguest); [ -n \"$ip\" ] && ping -c 1 -W 2 \"$ip\" >/dev/null && {{ echo \"PINGED nsguest $ip\"; break; }}; sleep 1; done\n\
         wget -q -O /tmp/blob http://{WAN}:8000/blob && echo \"HTTP $(md5sum /tmp/blob | cut -d' ' -f1)\"\n"
    );
    for o in others {
        s.push_str(&format!(
            "for i in $(seq 60); do ip=$(look {o}); [ -n \"$ip\" ] && ping -c 1 -W 1 \"$ip\" >/dev/null && {{ echo \"SEES {o} $ip\"; break; }}; sleep 1; done\n"
        ));
    }
    s.push_str(&format!("echo {CHECKS_DONE}; sleep 600\n"));
    s
}

/// [`script`], with IPv6 checks before the end: a SLAAC address from the gateway's
/// advertisements (`V6ADDR`), then a ping of the gateway's IPv6 address (`PINGED6`).
fn script6(name: &str, others: &[&str]) -> String {
    let mut s = script(name, others);
    let end = format!("echo {CHECKS_DONE}; sleep 600\n");
    s.truncate(s.len() - end.len());
    s.push_str(&format!(
        "for i in $(seq 30); do a=$(ip -6 addr show dev eth0 | awk '/inet6 {V6_PREFIX}/ && !/tentative/ {{print $2}}'); [ -n \"$a\" ] && {{ echo \"V6ADDR $a\"; break; }}; sleep 1; done\n\
         for i in $(seq 10); do ping -6 -c 1 -W 2 {V6_GATEWAY} >/dev/null 2>&1 && {{ echo PINGED6; break; }}; sleep 1; done\n"
    ));
    s.push_str(&end);
    s
}

/// The IPv6 prefix of the QEMU test's network (beside libvirt's default IPv4 one) and
/// its gateway.
const V6_PREFIX: &str = "fd00:7a::";
const V6_GATEWAY: &str = "fd00:7a::1";

/// libvirt's default network with an IPv6 `<ip>` beside its IPv4 one.
const DUAL_STACK: &str = "<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:7a::1' prefix='64'/>
</network>";

/// What a guest prints when its checks are over (it then waits to be killed).
const CHECKS_DONE: &str = "VNET-GUEST: checks done";

/// A wrapper around dist/qemu/vnet-ifup|ifdown that names the network, run dir and
/// switchctl (QEMU runs tap scripts with just the interface name).
fn tap_script(net: &Net, which: &str) -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let p = net.dir.path().join(format!("vnet-{which}"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nVNET_NETWORK={} VNET_RUN_DIR={} VNET_SWITCHCTL={SWITCHCTL} exec {root}/dist/qemu/vnet-{which} \"$@\"\n",
            net.name,
            net.dir.path().display()
        ),
    )
    .expect("write tap script");
    let st = std::process::Command::new("chmod")
        .args(["0755"])
        .arg(&p)
        .status()
        .expect("chmod");
    assert!(st.success());
    p
}

/// The wan serving a 4 MiB file (and its md5), and a namespace guest named `nsguest`
/// (MAC `mac`) holding a lease (its address), for the QEMU guests to fetch, find and
/// ping.
fn wan_and_ns_guest(net: &Net, mac: &str) -> (Wan, String, Netns, String) {
    let files = net.dir.path().join("www");
    std::fs::create_dir_all(&files).expect("www");
    let blob: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13).to_le_bytes()[0])
        .collect();
    std::fs::write(files.join("blob"), &blob).expect("blob");
    let want = md5(&files.join("blob"));
    let w = wan(net, &files);
    let ns_guest = net.add_bare_guest("vqn", mac);
    let lease = common::clients::udhcpc(net, &ns_guest, "n", &["-x", "hostname:nsguest"]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(!ip.is_empty(), "{}", net.log());
    (w, want, ns_guest, ip)
}

fn md5(path: &Path) -> String {
    let out = std::process::Command::new("md5sum")
        .arg(path)
        .output()
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn stream_dgram_and_tap_guests_lease_resolve_ping_each_other_and_fetch_through_nat() {
    let mut net = Net::start_with(Some(DUAL_STACK));
    let (_wan, want, _ns_guest, _) = wan_and_ns_guest(&net, "52:54:00:a0:00:01");

    let image = guest_image();
    let d = net.dir.path();
    let names = ["vmstream", "vmdgram", "vmtap"];
    let others = |me: &str| {
        names
            .iter()
            .copied()
            .filter(|n| *n != me)
            .collect::<Vec<_>>()
    };
    let boot = |name: &str, netdev: String, mac: &str, netns: Option<&str>| {
        let initrd = image.with_script(d, &script6(name, &others(name)));
        let args = virtio_net(&netdev, mac);
        let log = d.join(format!("{name}.log"));
        match netns {
            Some(ns) => QemuGuest::boot_in_netns(ns, &image, &initrd, &args, &log),
            None => QemuGuest::boot(&image, &initrd, &args, &log),
        }
    };
    let stream = boot(
        "vmstream",
        netdev_stream("n0", &d.join(format!("{}.stream", net.name))),
        "52:54:00:a0:00:11",
        None,
    );
    let dgram = boot(
        "vmdgram",
        netdev_dgram(
            "n0",
            &d.join("vmdgram.sock"),
            &d.join(format!("{}.dgram", net.name)),
        ),
        "52:54:00:a0:00:12",
        None,
    );
    let up = tap_script(&net, "ifup");
    let down = tap_script(&net, "ifdown");
    let tap_if = format!("vqt{}", unique());
    let host_ns = net.host.name().to_owned();
    let tap = boot(
        "vmtap",
        format!(
            "tap,id=n0,ifname={tap_if},script={},downscript={}",
            up.display(),
            down.display()
        ),
        "52:54:00:a0:00:13",
        Some(&host_ns),
    );
    let guests = [("vmstream", &stream), ("vmdgram", &dgram), ("vmtap", &tap)];
    for (name, g) in guests {
        let done = g.wait_for_line(CHECKS_DONE, BOOT);
        let log = g.log_text();
        eprintln!("{name}: done after {:.1?}", g.elapsed());
        assert!(done, "{name}:\n{log}\nswitchd:\n{}", net.log());
        assert!(
            log.contains("VNET-GUEST: lease 192.168.122."),
            "{name}:\n{log}"
        );
        assert!(log.contains("PINGED nsguest"), "{name}:\n{log}");
        assert!(log.contains(&format!("HTTP {want}")), "{name}:\n{log}");
        assert!(
            log.contains(&format!("V6ADDR {V6_PREFIX}")) && log.contains("PINGED6"),
            "{name} got no IPv6 beside IPv4:\n{log}"
        );
        for o in others(name) {
            assert!(
                log.contains(&format!("SEES {o} ")),
                "{name} does not see {o}:\n{log}"
            );
        }
    }
    // the guests are still up: one port of each kind (and the namespace guest's)
    let kinds: Vec<String> = net
        .port_list()
        .iter()
        .map(|p| p["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for k in ["stream", "dgram", "tap"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} port: {kinds:?}");
    }
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    for n in names {
        assert!(leases.contains(n), "{n} has no lease: {leases}");
    }
    assert!(net.daemon_mut().is_running());
}

#[test]
fn a_killed_stream_guest_loses_its_port_and_gets_its_lease_back_on_restart() {
    let net = Net::start();
    let image = guest_image();
    let d = net.dir.path();
    let netdev = netdev_stream("n0", &d.join(format!("{}.stream", net.name)));
    let args = virtio_net(&netdev, "52:54:00:a0:00:21");
    let initrd = image.with_script(d, "udhcpc -i eth0 -x hostname:vmre -t 20 -T 1 -A 1 -n -q || exit 1\necho HOLDING\nsleep 600\n");
    let lease_of = |g: &QemuGuest| {
        assert!(g.wait_for_line("HOLDING", BOOT), "{}", g.log_text());
        g.log_text()
            .lines()
            .find_map(|l| l.split("VNET-GUEST: lease ").nth(1))
            .and_then(|r| r.split('/').next())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let streams = || {
        net.port_list()
            .iter()
            .filter(|p| p["kind"] == "stream")
            .count()
    };
    let mut first = QemuGuest::boot(&image, &initrd, &args, &d.join("a.log"));
    let ip1 = lease_of(&first);
    assert!(ip1.starts_with("192.168.122."), "{}", first.log_text());
    assert_eq!(streams(), 1);
    first.kill();
    assert!(
        wait_for(Duration::from_secs(5), || streams() == 0),
        "the port outlived QEMU: {}",
        net.log()
    );
    let second = QemuGuest::boot(&image, &initrd, &args, &d.join("b.log"));
    let ip2 = lease_of(&second);
    assert_eq!(ip1, ip2, "a new lease after the restart");
    assert_eq!(streams(), 1);
}

#[test]
fn stream_and_dgram_guests_work_with_an_unprivileged_switchd() {
    vnet_testkit::require_root();
    let dir = vnet_testkit::TempDir::new("vnet-qunpriv");
    let host = Netns::new("vqu");
    let name = format!("q{}", unique());
    let (switchd, log) = common::unprivileged_switchd(&host, dir.path(), &name);
    let run = dir.path().join("run");
    let stream_path = run.join(format!("{name}.stream"));
    assert!(
        wait_for(Duration::from_secs(10), || stream_path.exists()),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let image = guest_image();
    let d = dir.path();
    // each guest finds the other through the gateway's DNS, by the name it sent
    let s = |me: &str, peer: &str| {
        format!(
            "udhcpc -i eth0 -x hostname:{me} -t 20 -T 1 -A 1 -n -q || exit 1\n\
             ping -c 1 -W 3 192.168.122.1 >/dev/null && echo PINGED-GW\n\
             for i in $(seq 40); do ip=$(nslookup {peer} 192.168.122.1 2>/dev/null | awk '/^Address: /{{print $2}}' | tail -n 1); \
             [ -n \"$ip\" ] && ping -c 1 -W 1 \"$ip\" >/dev/null && {{ echo PINGED-PEER; break; }}; sleep 1; done\n\
             echo {CHECKS_DONE}; sleep 600\n"
        )
    };
    let g1 = QemuGuest::boot(
        &image,
        &image.with_script(d, &s("vmus", "vmud")),
        &virtio_net(&netdev_stream("n0", &stream_path), "52:54:00:a0:00:31"),
        &d.join("s.log"),
    );
    let g2 = QemuGuest::boot(
        &image,
        &image.with_script(d, &s("vmud", "vmus")),
        &virtio_net(
            &netdev_dgram("n0", &d.join("ud.sock"), &run.join(format!("{name}.dgram"))),
            "52:54:00:a0:00:32",
        ),
        &d.join("d.log"),
    );
    // QEMU (root here) binds its dgram socket with the umask's mode; switchd (nobody)
    // must be able to send to it: users run both as one user, the test opens it up
    let ud = d.join("ud.sock");
    assert!(wait_for(Duration::from_secs(10), || ud.exists()));
    let st = std::process::Command::new("chmod")
        .args(["0666"])
        .arg(&ud)
        .status()
        .expect("chmod");
    assert!(st.success());
    for g in [&g1, &g2] {
        let done = g.wait_for_line(CHECKS_DONE, BOOT);
        let text = g.log_text();
        assert!(
            done,
            "{text}\nswitchd:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            text.contains("PINGED-GW") && text.contains("PINGED-PEER"),
            "{text}"
        );
    }
    // switchd really runs as nobody
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", switchd.id())).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
}

/// [`script`] with `before` run first and `after` run once the checks are over (before
/// the guest prints [`CHECKS_DONE`]).
fn script_with(name: &str, others: &[&str], before: &str, after: &str) -> String {
    let mut s = script(name, others);
    let end = format!("echo {CHECKS_DONE}; sleep 600\n");
    s.truncate(s.len() - end.len());
    format!("{before}{s}{after}{end}")
}

/// The first IPv4 lease lines of a guest's console, in order.
fn leases(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("VNET-GUEST: lease ").nth(1))
        .filter_map(|r| r.split('/').next())
        .map(str::to_owned)
        .collect()
}

/// The port-list entry of port `name`.
fn port(net: &Net, name: &str) -> serde_json::Value {
    net.port_list()
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}: {}", net.log()))
}

#[test]
fn vhost_user_guests_lease_resolve_ping_exchange_tcp_and_keep_their_port() {
    let mut net = Net::start();
    let (_wan, want, ns_guest, _) = wan_and_ns_guest(&net, "52:54:00:a1:00:01");

    let d = net.dir.path();
    let socks = [d.join("vu1.sock"), d.join("vu2.sock")];
    for (name, sock) in ["vu1", "vu2"].iter().zip(&socks) {
        let sock = sock.display().to_string();
        net.ctl_json(&[
            "port-add",
            &net.name,
            "vhost-user",
            "--socket",
            &sock,
            "--name",
            name,
        ]);
        let p = port(&net, name);
        assert_eq!(p["kind"], "vhost-user", "{p}");
        assert_eq!(p["peer"], "listening", "{p}");
        assert_eq!(p["ifname"], sock.as_str(), "{p}");
    }
    let image = guest_image();
    // vmvu1 serves 4 MiB over HTTP; vmvu2 fetches it by name: guest to guest TCP
    let serve = "mkdir -p /www; dd if=/dev/urandom of=/www/blob bs=1024 count=4096 2>/dev/null\n\
                 echo \"SERVED $(md5sum /www/blob | cut -d' ' -f1)\"; httpd -p 8080 -h /www\n";
    let fetch = "for i in $(seq 60); do ip=$(look vmvu1); [ -n \"$ip\" ] && wget -q -O /tmp/peer http://$ip:8080/blob && { echo \"GOT $(md5sum /tmp/peer | cut -d' ' -f1)\"; break; }; sleep 1; done\n";
    let mon = d.join("vu1.mon");
    let mut vu1_args = vhost_user_nic(&socks[0], "52:54:00:a1:00:11");
    vu1_args.extend([
        "-monitor".to_owned(),
        format!("unix:{},server=on,wait=off", mon.display()),
    ]);
    let vu1 = QemuGuest::boot_rebootable(
        &image,
        &image.with_script(d, &script_with("vmvu1", &["vmstream", "vmvu2"], serve, "")),
        &vu1_args,
        &d.join("vu1.log"),
    );
    let mut vu2 = QemuGuest::boot(
        &image,
        &image.with_script(d, &script_with("vmvu2", &["vmstream", "vmvu1"], "", fetch)),
        &vhost_user_nic(&socks[1], "52:54:00:a1:00:12"),
        &d.join("vu2.log"),
    );
    let stream = QemuGuest::boot(
        &image,
        &image.with_script(d, &script("vmstream", &["vmvu1", "vmvu2"])),
        &virtio_net(
            &netdev_stream("n0", &d.join(format!("{}.stream", net.name))),
            "52:54:00:a1:00:13",
        ),
        &d.join("stream.log"),
    );
    for (name, g) in [("vmvu1", &vu1), ("vmvu2", &vu2), ("vmstream", &stream)] {
        let done = g.wait_for_line(CHECKS_DONE, BOOT);
        let log = g.log_text();
        eprintln!("{name}: done after {:.1?}", g.elapsed());
        assert!(done, "{name}:\n{log}\nswitchd:\n{}", net.log());
        assert!(leases(&log).len() == 1, "{name}:\n{log}");
        assert!(log.contains("PINGED nsguest"), "{name}:\n{log}");
        assert!(log.contains(&format!("HTTP {want}")), "{name}:\n{log}");
    }
    for (name, g, others) in [
        ("vmvu1", &vu1, ["vmstream", "vmvu2"]),
        ("vmvu2", &vu2, ["vmstream", "vmvu1"]),
        ("vmstream", &stream, ["vmvu1", "vmvu2"]),
    ] {
        let log = g.log_text();
        for o in others {
            assert!(
                log.contains(&format!("SEES {o} ")),
                "{name} does not see {o}:\n{log}"
            );
        }
    }
    let served = vu1.log_text();
    let served = served
        .lines()
        .find_map(|l| l.strip_prefix("SERVED "))
        .expect("vmvu1 served nothing")
        .to_owned();
    assert!(
        vu2.log_text().contains(&format!("GOT {served}")),
        "guest to guest TCP over vhost-user:\n{}",
        vu2.log_text()
    );
    // offloads: the guests sent TSO super-frames into the switch, whole
    let p1 = port(&net, "vu1");
    assert_eq!(p1["peer"], "connected", "{p1}");
    assert!(p1["io"]["gso_in"].as_u64().unwrap_or(0) > 0, "{p1}");

    // a reboot of the guest (a device reset: its rings are stopped and set up again)
    // keeps its port and its lease
    let first = leases(&vu1.log_text());
    let mut m = std::os::unix::net::UnixStream::connect(&mon).expect("monitor");
    std::io::Write::write_all(&mut m, b"system_reset\n").expect("system_reset");
    assert!(
        wait_for(BOOT, || leases(&vu1.log_text()).len() >= 2),
        "no lease after the reboot:\n{}\nswitchd:\n{}",
        vu1.log_text(),
        net.log()
    );
    let again = leases(&vu1.log_text());
    assert_eq!(again[1], first[0], "a new lease after the reboot");
    assert_eq!(port(&net, "vu1")["id"], p1["id"]);

    // kill -9 of QEMU: the connection goes, the port stays listening, switchd carries on
    let p2 = port(&net, "vu2");
    let ip2 = leases(&vu2.log_text())[0].clone();
    vu2.kill();
    assert!(
        wait_for(Duration::from_secs(5), || port(&net, "vu2")["peer"]
            == "listening"),
        "{}",
        net.log()
    );
    let ping = ns_guest.run("ping", &["-c", "1", "-W", "2", &first[0]]);
    assert!(ping.status.success(), "vmvu1 unreachable after vmvu2 died");
    let vu2 = QemuGuest::boot(
        &image,
        &image.with_script(
            d,
            "udhcpc -i eth0 -x hostname:vmvu2 -t 20 -T 1 -A 1 -n -q || exit 1\necho HOLDING\nsleep 600\n",
        ),
        &vhost_user_nic(&socks[1], "52:54:00:a1:00:12"),
        &d.join("vu2b.log"),
    );
    assert!(
        vu2.wait_for_line("HOLDING", BOOT),
        "{}\n{}",
        vu2.log_text(),
        net.log()
    );
    assert_eq!(
        leases(&vu2.log_text()),
        [ip2],
        "a new lease after the restart"
    );
    let p2b = port(&net, "vu2");
    assert_eq!(p2b["id"], p2["id"]);
    assert_eq!(p2b["peer"], "connected");
    assert!(net.daemon_mut().is_running());
}

/// The network's own vhost-user socket, `<run-dir>/<network>.vhost-user`: a guest needs no
/// `port-add`; its port (`vhost-user-N`) lives as long as its connection.
#[test]
fn a_guest_on_the_networks_vhost_user_socket_gets_a_port_for_its_connection() {
    let net = Net::start();
    let d = net.dir.path();
    let sock = d.join(format!("{}.vhost-user", net.name));
    let image = guest_image();
    let mut g = QemuGuest::boot(
        &image,
        &image.with_script(
            d,
            "udhcpc -i eth0 -x hostname:vmvs -t 20 -T 1 -A 1 -n -q || exit 1\n\
             ping -c 1 -W 2 192.168.122.1 >/dev/null && echo PINGED-GW\necho HOLDING\nsleep 600\n",
        ),
        &vhost_user_nic(&sock, "52:54:00:a1:00:31"),
        &d.join("vs.log"),
    );
    assert!(
        g.wait_for_line("HOLDING", BOOT),
        "{}\n{}",
        g.log_text(),
        net.log()
    );
    assert!(g.log_text().contains("PINGED-GW"), "{}", g.log_text());
    let ports = || {
        net.port_list()
            .into_iter()
            .filter(|p| p["kind"] == "vhost-user")
            .collect::<Vec<_>>()
    };
    let p = ports();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("vhost-user-"),
        "{p:?}"
    );
    assert_eq!(p[0]["peer"], "connected");
    g.kill();
    assert!(
        wait_for(Duration::from_secs(5), || ports().is_empty()),
        "the port outlived its connection: {:?}\n{}",
        ports(),
        net.log()
    );
}
