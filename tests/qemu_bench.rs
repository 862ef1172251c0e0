//! Side by side, in one run: guest → guest TCP throughput between two QEMU guests (TCG)
//! attached to vnet by `-netdev stream`, `-netdev dgram` and tap (`vnet-ifup`), and the
//! same two guests on TAPs in a Linux bridge. Not part of the test suite (`#[ignore]`):
//! run it with `scripts/bench-qemu.sh`. The guests have busybox only, so the workload is
//! HTTP downloads (busybox httpd → wget) of a 48 MiB file, eight back to back per run and
//! three runs per pair, each run timed inside the client guest with /proc/uptime (10 ms
//! ticks: a run lasts a second or more, so the tick is 1 % of it at most); the median
//! run is reported. vhost-user guests share their memory with switchd (a memfd) and
//! carry offloads; the others do not.
//!
//! Under TCG the guests' emulated CPUs bound these figures: they compare the transports
//! at the speed TCG guests reach, not what KVM guests would.

mod common;

use std::time::Duration;

use common::qemu::{
    guest_image, netdev_dgram, netdev_stream, vhost_user_nic, virtio_net, QemuGuest,
};
use common::{Net, SWITCHCTL};
use vnet_testkit::{unique, Netns};

const MIB: f64 = 48.0;
/// Downloads per timed run.
const REPEAT: f64 = 8.0;

const SERVER: &str = "ip addr add 10.77.0.1/24 dev eth0\nip link set eth0 up\nmkdir -p /www\n\
    dd if=/dev/zero of=/www/big bs=1M count=48 2>/dev/null\nhttpd -h /www -p 80\necho SERVING\nsleep 900\n";
const CLIENT: &str = "ip addr add 10.77.0.2/24 dev eth0\nip link set eth0 up\n\
    for i in $(seq 90); do ping -c 1 -W 1 10.77.0.1 >/dev/null && break; done\n\
    sleep 1\n\
    for r in 1 2 3; do t0=$(cut -d' ' -f1 /proc/uptime); \
    for k in 1 2 3 4 5 6 7 8; do wget -q -O /dev/null http://10.77.0.1/big || echo FAILED; done; \
    t1=$(cut -d' ' -f1 /proc/uptime); echo \"XFER $t0 $t1\"; done\n";

/// Boots a server and a client guest with the NICs `nets` gives for each (0 = server),
/// waits for the client, returns the median Mbit/s.
fn pair(
    label: &str,
    dir: &std::path::Path,
    netns: Option<&str>,
    nics: &dyn Fn(usize) -> Vec<String>,
) -> f64 {
    let image = guest_image();
    let boot = |i: usize, script: &str| {
        let initrd = image.with_script(dir, script);
        let log = dir.join(format!("{label}-{i}.log"));
        match netns {
            Some(ns) => QemuGuest::boot_in_netns(ns, &image, &initrd, &nics(i), &log),
            None => QemuGuest::boot(&image, &initrd, &nics(i), &log),
        }
    };
    let server = boot(0, SERVER);
    assert!(
        server.wait_for_line("SERVING", Duration::from_secs(120)),
        "{label} server:\n{}",
        server.log_text()
    );
    let client = boot(1, CLIENT);
    let rc = client.wait_test_done(Duration::from_secs(600));
    let log = client.log_text();
    assert_eq!(rc, Some(0), "{label} client:\n{log}");
    assert!(!log.contains("FAILED"), "{label}:\n{log}");
    let mut rates: Vec<f64> = log
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "XFER").then_some(())?;
            let t0: f64 = f.next()?.parse().ok()?;
            let t1: f64 = f.next()?.parse().ok()?;
            Some(REPEAT * MIB * 8.0 * 1.048_576 / (t1 - t0).max(0.01))
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    eprintln!("{label:<24} runs (Mbit/s): {rates:.0?}");
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

fn mac(i: usize) -> String {
    format!("52:54:00:b0:00:{:02x}", i + 1)
}

#[test]
#[ignore = "a benchmark: scripts/bench-qemu.sh"]
fn guest_to_guest_over_each_transport_vs_a_linux_bridge() {
    let mut results = Vec::new();

    // vnet, stream and dgram (one switchd per scenario)
    {
        let net = Net::start();
        let d = net.dir.path().to_owned();
        let sock = d.join(format!("{}.stream", net.name));
        let r = pair("vnet stream", &d, None, &|i| {
            virtio_net(&netdev_stream("n0", &sock), &mac(i))
        });
        results.push(("vnet -netdev stream", r));
    }
    {
        let net = Net::start();
        let d = net.dir.path().to_owned();
        let remote = d.join(format!("{}.dgram", net.name));
        let dd = d.clone();
        let r = pair("vnet dgram", &d, None, &|i| {
            virtio_net(
                &netdev_dgram("n0", &dd.join(format!("g{i}.sock")), &remote),
                &mac(i),
            )
        });
        results.push(("vnet -netdev dgram", r));
    }
    // vnet, vhost-user: a port per guest, listening
    {
        let net = Net::start();
        let d = net.dir.path().to_owned();
        for i in 0..2 {
            let sock = d.join(format!("vu{i}.sock")).display().to_string();
            net.ctl_json(&["port-add", &net.name, "vhost-user", "--socket", &sock]);
        }
        let dd = d.clone();
        let r = pair("vnet vhost-user", &d, None, &|i| {
            vhost_user_nic(&dd.join(format!("vu{i}.sock")), &mac(i))
        });
        results.push(("vnet -netdev vhost-user", r));
    }
    // vnet, tap attached by the ifup script (QEMU in switchd's namespace)
    {
        let net = Net::start();
        let d = net.dir.path().to_owned();
        let root = env!("CARGO_MANIFEST_DIR");
        for which in ["ifup", "ifdown"] {
            let p = d.join(format!("vnet-{which}"));
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\nVNET_NETWORK={} VNET_RUN_DIR={} VNET_SWITCHCTL={SWITCHCTL} exec {root}/dist/qemu/vnet-{which} \"$@\"\n",
                    net.name,
                    d.display()
                ),
            )
            .expect("script");
            net.host
                .run_ok("chmod", &["0755", &p.display().to_string()]);
        }
        let u = unique();
        let r = pair("vnet tap", &d, Some(net.host.name()), &|i| {
            virtio_net(
                &format!(
                    "tap,id=n0,ifname=vqb{i}{u},script={},downscript={}",
                    d.join("vnet-ifup").display(),
                    d.join("vnet-ifdown").display()
                ),
                &mac(i),
            )
        });
        results.push(("vnet -netdev tap", r));
    }
    // the Linux bridge: TAPs made beforehand in a namespace, enslaved to br0
    {
        let ns = Netns::new("vqk");
        let dir = vnet_testkit::TempDir::new("vnet-qbench");
        ns.run_ok("ip", &["link", "add", "br0", "type", "bridge"]);
        ns.run_ok("ip", &["link", "set", "br0", "up"]);
        for i in 0..2 {
            let t = format!("tb{i}");
            ns.run_ok(
                "ip",
                &["tuntap", "add", "mode", "tap", "vnet_hdr", "name", &t],
            );
            ns.run_ok("ip", &["link", "set", &t, "master", "br0"]);
            ns.run_ok("ip", &["link", "set", &t, "up"]);
        }
        let r = pair("linux bridge", dir.path(), Some(ns.name()), &|i| {
            virtio_net(
                &format!("tap,id=n0,ifname=tb{i},script=no,downscript=no"),
                &mac(i),
            )
        });
        results.push(("Linux bridge (tap)", r));
    }

    let bridge = results.last().map_or(1.0, |r| r.1);
    println!("| path | guest→guest Mbit/s (median of 3) | vs Linux bridge |");
    println!("|---|---|---|");
    for (label, r) in &results {
        println!("| {label} | {r:.0} | {:.2} |", r / bridge);
    }
    let of = |l: &str| results.iter().find(|r| r.0 == l).map_or(0.0, |r| r.1);
    let vu = of("vnet -netdev vhost-user");
    println!(
        "vhost-user: {:.2}x stream, {:.2}x tap",
        vu / of("vnet -netdev stream").max(1.0),
        vu / of("vnet -netdev tap").max(1.0)
    );
}
