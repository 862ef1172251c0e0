//! `kill -9` of switchd under traffic, then a restart: the persistent TAP comes back,
//! the guest keeps its address and lease, a live port forward is still there, and the
//! guest's ping resumes without anything done in the guest.

mod common;

use std::time::{Duration, Instant};

use common::clients::udhcpc;
use common::Net;
use vnet_testkit::{wait_for, ChildGuard, Netns};

#[test]
fn after_kill_9_a_restart_takes_back_persistent_ports_leases_and_live_forwards() {
    let mut net = Net::start();
    let g = Netns::new("vkc");
    net.ctl_json(&[
        "port-add",
        &net.name,
        "tap",
        "--netns",
        g.name(),
        "--ifname",
        "eth0",
        "--mac",
        "52:54:00:d0:00:01",
        "--persistent",
    ]);
    g.run_ok("ip", &["link", "set", "eth0", "up"]);
    let lease = udhcpc(&net, &g, "k", &[]);
    let ip = lease.get("ip").cloned().unwrap_or_default();
    assert!(ip.starts_with("192.168.122."), "{lease:?}");
    let fwd = format!("tcp:8080:{ip}:80");
    net.ctl_json(&["port-forward-add", &net.name, &fwd, "--live"]);

    // a ping running through it all
    let mut ping = g.cmd("ping", &["-i", "0.1", "-W", "1", "192.168.122.1"]);
    ping.stdout(std::process::Stdio::null());
    let _ping = ChildGuard::spawn(ping);
    std::thread::sleep(Duration::from_millis(500));

    net.stop(true); // SIGKILL
                    // the guest's interface outlives switchd (persistent), without a carrier
    g.run_ok("ip", &["link", "show", "eth0"]);
    assert!(!g
        .run("ping", &["-c", "1", "-W", "1", "192.168.122.1"])
        .status
        .success());

    let t0 = Instant::now();
    net.launch();
    let back = wait_for(Duration::from_secs(10), || {
        g.run("ping", &["-c", "1", "-W", "1", "192.168.122.1"])
            .status
            .success()
    });
    let took = t0.elapsed();
    assert!(back, "no traffic after the restart:\n{}", net.log());
    eprintln!("traffic resumed {took:.2?} after the restart began");

    // same port, same address, lease and forward still there
    let ports = net.port_list();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == format!("{}:eth0", g.name()).as_str() && p["persistent"] == true),
        "{ports:?}\n{}",
        net.log()
    );
    let addrs = g.run_ok("ip", &["-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&ip), "{addrs}");
    let leases = net.ctl_json(&["net-dhcp-leases", &net.name]).to_string();
    assert!(leases.contains(&ip), "{leases}");
    let forwards = net.ctl_json(&["port-forward-list", &net.name]).to_string();
    assert!(forwards.contains("8080"), "{forwards}");
    assert!(
        net.log().contains("persistent TAP re-attached"),
        "{}",
        net.log()
    );

    // port-del forgets it: a later restart does not take it back
    net.ctl_json(&["port-del", &net.name, &format!("{}:eth0", g.name())]);
    net.stop(true);
    net.launch();
    assert!(net.guest_ports().is_empty(), "{:?}", net.port_list());
}

/// A vhost-user port is a socket switchd listens on: after a `kill -9` and a restart it
/// listens again at the same path, so QEMU (with `reconnect=`) finds it back.
#[test]
fn a_vhost_user_socket_is_listened_on_again_after_a_restart() {
    let mut net = Net::start();
    let sock = net.dir.path().join("vm.sock");
    let path = sock.display().to_string();
    net.ctl_json(&["port-add", &net.name, "vhost-user", "--socket", &path]);
    net.stop(true);
    net.launch();
    let ports = net.port_list();
    let p = ports
        .iter()
        .find(|p| p["name"] == "vm")
        .unwrap_or_else(|| panic!("{ports:?}\n{}", net.log()));
    assert_eq!(p["kind"], "vhost-user", "{p}");
    assert_eq!(p["peer"], "listening", "{p}");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    assert!(
        net.log().contains("vhost-user socket taken back"),
        "{}",
        net.log()
    );
    // port-del removes the socket and forgets the port
    net.ctl_json(&["port-del", &net.name, "vm"]);
    assert!(!sock.exists());
    net.stop(true);
    net.launch();
    assert!(net.port_list().iter().all(|p| p["name"] != "vm"));
}
