//! `switchctl capture`: frames as the switch sees them, read back with `tcpdump -r`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Net, SWITCHCTL};
use vnet_testkit::{wait_for, ChildGuard};

fn tcpdump_lines(file: &std::path::Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .expect("tcpdump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn start_capture(net: &Net, args: &[&str], file: &std::path::Path) -> ChildGuard {
    let mut cmd = Command::new(SWITCHCTL);
    cmd.arg("--run-dir")
        .arg(net.dir.path())
        .arg("capture")
        .arg(&net.name)
        .args(args)
        .arg("-w")
        .arg(file);
    let c = ChildGuard::spawn(cmd);
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::metadata(file)
            .is_ok_and(|m| m.len() >= 24)),
        "no pcap header: {}",
        net.log()
    );
    c
}

#[test]
fn a_ping_between_two_guests_is_captured_in_order_on_the_right_port() {
    let mut net = Net::start();
    net.add_guest();
    net.add_guest();
    let (port1, ip2) = (net.guests[0].port.clone(), net.guests[1].ip.clone());
    let file = net.dir.path().join("port1.pcap");
    let all = net.dir.path().join("all.pcap");
    let mut cap = start_capture(&net, &[&port1, "--count", "4"], &file);
    let _all = start_capture(&net, &["--all"], &all);
    assert!(net.guests[0].ping(&ip2));
    // --count 4: the capture ends by itself
    assert!(
        wait_for(Duration::from_secs(5), || !cap.is_running()),
        "capture did not stop after 4 frames"
    );
    let lines = tcpdump_lines(&file);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].contains("ARP, Request who-has 10.77.0.2"),
        "{lines:#?}"
    );
    assert!(lines[1].contains("ARP, Reply 10.77.0.2"), "{lines:#?}");
    assert!(lines[2].contains("ICMP echo request"), "{lines:#?}");
    assert!(lines[3].contains("ICMP echo reply"), "{lines:#?}");
    // every port: each frame once, as it arrived
    assert!(wait_for(Duration::from_secs(3), || tcpdump_lines(&all)
        .iter()
        .filter(|l| l.contains("ICMP echo"))
        .count()
        == 2));
    // capture on a port that does not exist: a clear error
    let out = Command::new(SWITCHCTL)
        .arg("--run-dir")
        .arg(net.dir.path())
        .args(["capture", &net.name, "nosuch", "-w", "-"])
        .output()
        .expect("switchctl");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port named"));
}
