//! Real DHCP clients run in guest namespaces: busybox `udhcpc`, ISC `dhclient`, `dhcpcd`.
//! Each returns what the server sent, as the client's script saw it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vnet_testkit::Netns;

use super::Net;

/// Key=value pairs a client script recorded.
pub fn read_kv(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&p)
        .status()
        .expect("chmod");
    p
}

/// Runs busybox udhcpc once in `ns`; returns what the server sent (empty if no lease).
pub fn udhcpc(net: &Net, ns: &Netns, tag: &str, extra: &[&str]) -> HashMap<String, String> {
    let out = net.dir.path().join(format!("udhcpc-{tag}.env"));
    let _ = std::fs::remove_file(&out);
    let script = write_script(
        net.dir.path(),
        &format!("udhcpc-{tag}.sh"),
        &format!(
            r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    echo "ip=$ip mask=$mask router=$router dns=$dns domain=$domain mtu=$mtu hostname=$hostname lease=$lease serverid=$serverid" > {out}
    ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
"#,
            out = out.display()
        ),
    );
    let mut args = vec![
        "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-A", "1", "-s",
    ];
    let s = script.to_string_lossy().into_owned();
    args.push(&s);
    args.extend_from_slice(extra);
    let _ = ns.run("busybox", &args);
    read_kv(&out)
}

/// Runs ISC dhclient once in `ns` (lease file `tag`); returns what the server sent.
pub fn dhclient(net: &Net, ns: &Netns, tag: &str) -> HashMap<String, String> {
    dhclient_with(net, ns, tag, &[])
}

/// [`dhclient`] with extra arguments (`-cf FILE`, ...).
pub fn dhclient_with(net: &Net, ns: &Netns, tag: &str, extra: &[&str]) -> HashMap<String, String> {
    let dir = net.dir.path();
    let out = dir.join(format!("dhclient-{tag}.env"));
    let _ = std::fs::remove_file(&out);
    let script = write_script(
        dir,
        &format!("dhclient-{tag}.sh"),
        &format!(
            r#"#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
    echo "ip=$new_ip_address mask=$new_subnet_mask router=$new_routers dns=$new_domain_name_servers domain=$new_domain_name mtu=$new_interface_mtu hostname=$new_host_name reason=$reason" > {out}
    ;;
  EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
"#,
            out = out.display()
        ),
    );
    let lf = dir.join(format!("dhclient-{tag}.leases"));
    let pf = dir.join(format!("dhclient-{tag}.pid"));
    let _ = std::fs::remove_file(&pf);
    let pid_file = pf.clone();
    let (script, lf, pf) = (
        script.to_string_lossy().into_owned(),
        lf.to_string_lossy().into_owned(),
        pf.to_string_lossy().into_owned(),
    );
    let mut args = vec![
        "20", "dhclient", "-1", "-4", "-sf", &script, "-lf", &lf, "-pf", &pf,
    ];
    args.extend_from_slice(extra);
    args.push("eth0");
    let _ = ns.run("timeout", &args);
    // dhclient daemonizes after the lease; stop it so it does not renew behind our back
    // (the daemon writes its pid file a moment after the parent returns)
    let mut pid = String::new();
    vnet_testkit::wait_for(std::time::Duration::from_secs(2), || {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        !pid.trim().is_empty()
    });
    if !pid.trim().is_empty() {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        let proc_dir = format!("/proc/{}", pid.trim());
        vnet_testkit::wait_for(std::time::Duration::from_secs(2), || {
            !Path::new(&proc_dir).exists()
        });
    }
    read_kv(&out)
}

/// Releases the lease dhclient holds in lease file `tag` (`dhclient -r`: DHCPRELEASE).
pub fn dhclient_release(net: &Net, ns: &Netns, tag: &str) {
    let dir = net.dir.path();
    let script = dir.join(format!("dhclient-{tag}.sh"));
    let lf = dir.join(format!("dhclient-{tag}.leases"));
    let pf = dir.join(format!("dhclient-{tag}.pid"));
    let released = |l: &str| l.matches("DHCPRELEASE(").count();
    let before = released(&net.log());
    ns.run_ok(
        "timeout",
        &[
            "20",
            "dhclient",
            "-r",
            "-4",
            "-sf",
            &script.to_string_lossy(),
            "-lf",
            &lf.to_string_lossy(),
            "-pf",
            &pf.to_string_lossy(),
            "eth0",
        ],
    );
    // The release is a unicast from the leased address; the script keeps the address
    // (RELEASE) so a packet still waiting for ARP is not dropped. Drop it once the
    // server has the release.
    vnet_testkit::wait_for(std::time::Duration::from_secs(3), || {
        released(&net.log()) > before
    });
    ns.run_ok("ip", &["addr", "flush", "dev", "eth0"]);
}

/// Runs dhcpcd once in `ns`; returns what the server sent.
pub fn dhcpcd(net: &Net, ns: &Netns, tag: &str) -> HashMap<String, String> {
    let dir = net.dir.path();
    let out = dir.join(format!("dhcpcd-{tag}.env"));
    let script = write_script(
        dir,
        &format!("dhcpcd-{tag}.sh"),
        &format!(
            r#"#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    echo "ip=$new_ip_address mask=$new_subnet_mask router=$new_routers dns=$new_domain_name_servers domain=$new_domain_name mtu=$new_interface_mtu hostname=$new_host_name reason=$reason" > {out}
    ;;
esac
exit 0
"#,
            out = out.display()
        ),
    );
    let _ = ns.run(
        "timeout",
        &[
            "30",
            "dhcpcd",
            "-4",
            "-1",
            "-B",
            "-t",
            "20",
            "-c",
            &script.to_string_lossy(),
            "eth0",
        ],
    );
    let _ = ns.run("dhcpcd", &["-x", "eth0"]);
    read_kv(&out)
}

/// The hops busybox `traceroute` (or `traceroute6`, for an address with a `:`) shows
/// from `ns` to `dst`: one probe per hop, 2 s each, at most 4 hops; the output with it.
pub fn traceroute_hops(ns: &Netns, dst: &str) -> (Vec<String>, String) {
    let tool = if dst.contains(':') {
        "traceroute6"
    } else {
        "traceroute"
    };
    let out = ns.run(
        "busybox",
        &[tool, "-n", "-q", "1", "-w", "2", "-m", "4", dst],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hops = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect();
    (hops, text)
}
