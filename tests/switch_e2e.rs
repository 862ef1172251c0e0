//! End-to-end tests of one L2 segment: switchd in its own namespace, guests with real
//! kernel stacks in other namespaces on TAP ports, real tools (`ping`, `tcpdump`,
//! `iperf3`). They need root; see the README's test command.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::Net;
use vnet_testkit::wait_for;

#[test]
fn three_guests_reach_each_other_and_fdb_shows_them() {
    let mut net = Net::start();
    for _ in 0..3 {
        net.add_guest();
    }
    for a in &net.guests {
        for b in &net.guests {
            if a.ip != b.ip {
                assert!(
                    a.ping(&b.ip),
                    "{} cannot ping {}\n{}",
                    a.ip,
                    b.ip,
                    net.log()
                );
            }
        }
    }
    let mut fdb = net.fdb();
    // the network's gateway is a station too (it announced itself at start)
    fdb.retain(|r| r["port"] != "gateway");
    for g in &net.guests {
        let row = fdb
            .iter()
            .find(|r| r["mac"] == g.mac.as_str())
            .unwrap_or_else(|| panic!("{} not in fdb-show: {fdb:?}", g.mac));
        assert_eq!(row["port"], g.port.as_str(), "{} on the wrong port", g.mac);
        assert_eq!(row["vlan"], 0);
    }
    assert_eq!(fdb.len(), 3, "exactly the three guests: {fdb:?}");
    // port-list agrees: one MAC per port, frames both ways
    for p in net.guest_ports() {
        assert_eq!(p["macs"], 1, "{p}");
        assert!(p["counters"]["rx_frames"].as_u64() > Some(0));
        assert!(p["counters"]["tx_frames"].as_u64() > Some(0));
    }
}

/// Starts tcpdump in `g`'s namespace for frames *arriving* at eth0 for `dst_mac`;
/// returns once it is listening.
fn capture(g: &common::Guest, dst_mac: &str) -> vnet_testkit::ChildGuard {
    let mut c = g.ns.cmd(
        "tcpdump",
        &[
            "-i", "eth0", "-n", "-l", "-Q", "in", "-c", "1", "ether", "dst", dst_mac,
        ],
    );
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut t = vnet_testkit::ChildGuard::spawn(c);
    assert!(t.wait_stderr("listening on"), "tcpdump did not start");
    t
}

#[test]
fn unknown_unicast_is_flooded_to_the_others_and_not_back_to_the_sender() {
    let mut net = Net::start();
    for _ in 0..3 {
        net.add_guest();
    }
    let unknown = "02:00:00:00:99:99";
    let caps: Vec<_> = net.guests.iter().map(|g| capture(g, unknown)).collect();
    let vm1 = &net.guests[0];
    vm1.ns.run_ok(
        "ip",
        &[
            "neigh",
            "add",
            "10.77.0.99",
            "lladdr",
            unknown,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    // the echo requests go to the unknown MAC; nobody answers
    let _ = vm1
        .ns
        .run("ping", &["-c", "3", "-i", "0.2", "-W", "1", "10.77.0.99"]);
    let mut caps = caps.into_iter();
    let on_vm1 = caps.next().expect("three captures");
    for (i, cap) in caps.enumerate() {
        let out = cap
            .wait_output(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("vm{} never saw the flooded frame", i + 2));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("10.77.0.1 > 10.77.0.99"),
            "vm{}: {text}",
            i + 2
        );
    }
    assert!(
        on_vm1.wait_output(Duration::from_millis(500)).is_none(),
        "vm1 received its own frame back"
    );
}

#[test]
fn port_del_forgets_the_mac_and_removes_the_interface() {
    let mut net = Net::start();
    net.add_guest();
    net.add_guest();
    assert!(net.guests[0].ping(&net.guests[1].ip));
    let gone = &net.guests[1];
    assert!(net.fdb().iter().any(|r| r["mac"] == gone.mac.as_str()));
    net.ctl_json(&["port-del", &net.name, &gone.port]);
    assert!(
        !net.fdb().iter().any(|r| r["mac"] == gone.mac.as_str()),
        "MAC still in the FDB after port-del"
    );
    let link = gone.ns.run("ip", &["link", "show", "eth0"]);
    assert!(
        !link.status.success(),
        "eth0 still exists in the guest after port-del"
    );
    assert_eq!(net.guest_ports().len(), 1);
    assert!(!net.guests[0].ping(&net.guests[1].ip));
    // deleting it again is a clear error
    let err = net.ctl_err(&["port-del", &net.name, &net.guests[1].port]);
    assert!(err.contains("no port named"), "{err}");
}

#[test]
fn iperf3_between_two_guests_completes() {
    let mut net = Net::start();
    net.add_guest();
    net.add_guest();
    let mut cmd = net.guests[1].ns.cmd("iperf3", &["-s", "-1"]);
    cmd.stdout(Stdio::null());
    let server = vnet_testkit::ChildGuard::spawn(cmd);
    let (vm1, vm2) = (&net.guests[0], &net.guests[1]);
    assert!(vm2.ns.wait_listening(5201, Duration::from_secs(5)));
    let out = vm1.ns.run_ok("iperf3", &["-c", &vm2.ip, "-t", "2", "-J"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J output");
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 0, "iperf3 moved nothing: {out}");
    eprintln!(
        "iperf3 vm1 -> vm2 through switchd: {:.2} Gbit/s (debug build)",
        bps / 1e9
    );
    drop(server);
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let mut net = Net::start();
    net.add_guest();
    let before = net.port_list();
    let g = &net.guests[0];
    let name = net.name.clone();

    let mut errs = Vec::new();
    // the interface name is in use in that namespace
    let err = net.ctl_err(&[
        "port-add",
        &name,
        "tap",
        "--netns",
        g.ns.name(),
        "--ifname",
        "eth0",
    ]);
    assert!(err.contains("exists already"), "{err}");
    errs.push(err);
    // the port name is in use
    let err = net.ctl_err(&["port-add", &name, "tap", "--name", &g.port]);
    assert!(err.contains("in use"), "{err}");
    errs.push(err);
    // a missing namespace
    let err = net.ctl_err(&[
        "port-add",
        &name,
        "tap",
        "--netns",
        "vnet-no-such-ns",
        "--ifname",
        "eth1",
    ]);
    assert!(err.contains("not found"), "{err}");
    errs.push(err);
    // an over-long interface name
    let err = net.ctl_err(&[
        "port-add",
        &name,
        "tap",
        "--netns",
        g.ns.name(),
        "--ifname",
        "a-name-too-long-for-linux",
    ]);
    assert!(err.contains("too long"), "{err}");
    errs.push(err);
    // a bad MAC
    let err = net.ctl_err(&["port-add", &name, "tap", "--mac", "01:00:5e:00:00:01"]);
    assert!(err.contains("not a unicast"), "{err}");
    errs.push(err);
    // a network that is not running
    let err = net.ctl_err(&["port-list", "vnet-not-running"]);
    assert!(err.contains("is the network running"), "{err}");
    errs.push(err);
    for e in &errs {
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        assert!(e.starts_with("switchctl: error: "), "{e}");
    }

    // malformed control requests, straight on the socket
    let mut s = std::os::unix::net::UnixStream::connect(net.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    for req in [
        &b"this is not json\n"[..],
        b"{\"cmd\":\"port-add\",\"kind\":\"tap\",\"bogus\":1}\n",
        b"{\"cmd\":\"format-disk\"}\n",
        b"\xff\xfe\n",
    ] {
        s.write_all(req).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON error response");
        assert_eq!(v["ok"], false, "{line}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("malformed request")),
            "{line}"
        );
    }
    // an endless line: answered with an error and the connection closed
    let mut s2 = std::os::unix::net::UnixStream::connect(net.socket()).expect("connect");
    s2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s2.write_all(&vec![b'x'; 200 * 1024]);
    let mut resp = String::new();
    let _ = s2.read_to_string(&mut resp);
    assert!(resp.contains("request longer than"), "{resp}");

    // the daemon is alive and nothing changed
    assert!(net.daemon_mut().is_running(), "switchd died: {}", net.log());
    assert_eq!(net.port_list().len(), before.len());
    let links = net.guests[0].ns.run_ok("ip", &["-o", "link", "show"]);
    assert_eq!(
        links.lines().count(),
        2,
        "only lo and eth0 in the guest: {links}"
    );
    net.add_guest();
    assert!(
        net.guests[0].ping(&net.guests[1].ip),
        "still forwards after bad input"
    );
}

#[test]
fn sigterm_stops_switchd_and_removes_its_taps() {
    let mut net = Net::start();
    net.add_guest();
    let daemon = net.daemon.take().expect("running");
    let status = daemon
        .stop(Duration::from_secs(5))
        .expect("exited on SIGTERM");
    assert!(status.success(), "exit status {status}: {}", net.log());
    assert!(!net.guests[0]
        .ns
        .run("ip", &["link", "show", "eth0"])
        .status
        .success());
    assert!(!net.socket().exists(), "control socket left behind");
}

#[test]
fn a_second_switchd_for_the_same_network_is_refused() {
    let net = Net::start();
    let out = std::process::Command::new(common::SWITCHD)
        .args(["--name", &net.name, "--run-dir"])
        .arg(net.dir.path())
        .output()
        .expect("run switchd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(net.switchctl(&["net-info", &net.name]).status.success());
}

#[test]
fn persistent_tap_outlives_switchd_and_port_del_removes_it() {
    let mut net = Net::start();
    let ifname = format!("vp{}", vnet_testkit::unique());
    let info = net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--name",
        &ifname,
        "--persistent",
    ]);
    assert_eq!(info["persistent"], true);
    assert_eq!(info["ifname"], ifname.as_str());
    // a plain TAP beside it, named by the kernel
    let plain = net.ctl_json(&["port-add", &net.name, "tap"]);
    let plain_if = plain["ifname"].as_str().expect("ifname").to_owned();
    assert!(plain_if.starts_with("vnet"), "{plain}");
    // port-del removes even a persistent device
    let other = format!("vq{}", vnet_testkit::unique());
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--name",
        &other,
        "--persistent",
    ]);
    net.ctl_json(&["port-del", &net.name, &other]);
    assert!(!net
        .host
        .run("ip", &["link", "show", &other])
        .status
        .success());
    let daemon = net.daemon.take().expect("running");
    assert!(daemon
        .stop(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    assert!(
        net.host
            .run("ip", &["link", "show", &ifname])
            .status
            .success(),
        "persistent TAP gone after switchd exit"
    );
    assert!(
        !net.host
            .run("ip", &["link", "show", &plain_if])
            .status
            .success(),
        "non-persistent TAP left behind"
    );
    // the namespace guard removes the leftover device with the namespace
}

/// A guest namespace on a TAP port without offloads, its eth0 at 10.77.0.9.
fn plain_port(net: &Net, prefix: &str) -> vnet_testkit::Netns {
    let plain = vnet_testkit::Netns::new(prefix);
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--netns",
        plain.name(),
        "--ifname",
        "eth0",
        "--no-offloads",
    ]);
    plain.run_ok("ip", &["addr", "add", "10.77.0.9/24", "dev", "eth0"]);
    plain.run_ok("ip", &["link", "set", "eth0", "up"]);
    plain
}

#[test]
fn a_port_without_offloads_gets_plain_frames_from_one_with_them() {
    let mut net = Net::start();
    net.add_guest(); // offloads on: sends 64 KiB TSO frames
    let plain = plain_port(&net, "vtp");
    let features = plain.run_ok("ethtool", &["-k", "eth0"]);
    assert!(
        features.contains("tcp-segmentation-offload: off"),
        "{features}"
    );
    let vm1 = &net.guests[0];
    let mut cmd = plain.cmd("iperf3", &["-s"]);
    cmd.stdout(Stdio::null());
    let _server = vnet_testkit::ChildGuard::spawn(cmd);
    let mut bytes = 0;
    for reverse in [false, true] {
        assert!(wait_for(Duration::from_secs(10), || {
            let mut a = vec!["-c", "10.77.0.9", "-t", "1", "-J"];
            if reverse {
                a.push("-R");
            }
            let out = vm1.ns.run("iperf3", &a);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
            bytes > 0
        }));
        eprintln!("offload port <-> plain port, reverse={reverse}: {bytes} bytes in 1 s");
    }
    // no frame was lost to a failed write (a super-frame the plain TAP refused)
    let p = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == format!("{}:eth0", plain.name()).as_str())
        .expect("plain port");
    assert!(p["counters"]["drops"]["tx-failed"].is_null(), "{p}");
    // the offload guest's super-frames were cut for the plain port, each segment
    // checksummed; the plain port itself sends no super-frames
    let io = &p["io"];
    let n = |k: &str| io[k].as_u64().unwrap_or(0);
    assert!(n("segmented") > 0, "{p}");
    assert!(n("segments") > n("segmented"), "{p}");
    assert!(n("csums") >= n("segments"), "{p}");
    assert!(n("writes") >= n("segments"), "{p}");
    assert_eq!(n("gso_in"), 0, "{p}");
    assert!(n("reads") > 0, "{p}");
    let offload = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == vm1.port.as_str())
        .expect("offload port");
    assert!(offload["io"]["gso_in"].as_u64() > Some(0), "{offload}");
    assert_eq!(offload["io"]["segmented"], 0, "{offload}");
    // the same counters in `switchctl stats`
    let out = net.switchctl(&["stats", &net.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Segmented"), "{text}");
    // the plain port is written by a writer thread (switchd's default): removing the
    // port closes that thread's descriptor too, so the device goes at once
    assert!(net.log().contains("writer thread"), "{}", net.log());
    net.ctl_json(&["port-del", &net.name, &format!("{}:eth0", plain.name())]);
    assert!(
        !plain.run("ip", &["link", "show", "eth0"]).status.success(),
        "the plain TAP outlived its port"
    );
}

/// switchd's CPU time (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // after the ")" that ends the command name: state is field 3, utime 14, stime 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The loop writing every TAP itself (`--writer-threads 0`) and polling without sleeping
/// (`--busy-poll`): after a frame it keeps the CPU (it spins, not sleeps), frames still
/// cross both ways, super-frames are still cut for a port without offloads, the
/// control socket still answers and switchd stops on SIGTERM.
#[test]
fn busy_polling_without_writer_threads_still_switches() {
    let mut net = Net::start_with_args(None, &["--busy-poll", "3000000", "--writer-threads", "0"]);
    // a frame makes it poll for 3 s: most of a CPU second in the next second
    let pid = net.daemon.as_ref().expect("running").id();
    net.add_guest();
    let plain = plain_port(&net, "vtb");
    let vm1 = &net.guests[0];
    assert!(vm1.ping("10.77.0.9"), "{}", net.log());
    let spin = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let spin = cpu_ticks(pid) - spin;
    // 20 ticks (0.2 s) even on a machine busy with other tests; sleeping, it takes ~0
    assert!(
        spin >= 20,
        "{spin} ticks of CPU in the second after a frame"
    );
    let mut cmd = plain.cmd("iperf3", &["-s", "-1"]);
    cmd.stdout(Stdio::null());
    let _server = vnet_testkit::ChildGuard::spawn(cmd);
    let mut bytes = 0;
    assert!(wait_for(Duration::from_secs(10), || {
        let out = vm1.ns.run("iperf3", &["-c", "10.77.0.9", "-t", "1", "-J"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        bytes > 0
    }));
    let p = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == format!("{}:eth0", plain.name()).as_str())
        .expect("plain port");
    assert!(p["io"]["segments"].as_u64() > Some(0), "{p}");
    assert!(!net.log().contains("writer thread"), "{}", net.log());
    let daemon = net.daemon.take().expect("running");
    assert!(daemon
        .stop(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
}
