//! Counters and the Prometheus endpoint: they match a known exchange and move with
//! traffic; the endpoint's output is read with the Prometheus client library's own
//! OpenMetrics parser.

mod common;

use common::Net;

/// Parses the endpoint's output with prometheus_client's OpenMetrics parser (Debian's
/// python3-prometheus-client) and returns `name{port=...} value` lines for port counters.
fn scrape(net: &Net) -> Vec<String> {
    let body = net.host.run_ok(
        "curl",
        &["-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics"],
    );
    let parser = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       print(s.name, s.labels.get('port', '-'), s.labels.get('kind', '-'), int(s.value))\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "not valid OpenMetrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sample(lines: &[String], name: &str, port: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[0] == name && f[1] == port).then(|| f[3].parse().ok())?
        })
        .unwrap_or(0)
}

fn tx(net: &Net, port: &str) -> (u64, u64) {
    let p = net
        .port_list()
        .into_iter()
        .find(|p| p["name"] == port)
        .expect("port");
    (
        p["counters"]["tx_frames"].as_u64().unwrap_or(0),
        p["counters"]["tx_bytes"].as_u64().unwrap_or(0),
    )
}

#[test]
fn counters_match_a_known_exchange_and_the_metrics_endpoint_parses() {
    let mut net = Net::start_with_args(None, &["--metrics", "127.0.0.1:9464"]);
    net.add_guest();
    net.add_guest();
    let (p1, p2) = (net.guests[0].port.clone(), net.guests[1].port.clone());
    let ip2 = net.guests[1].ip.clone();
    assert!(net.guests[0].ping(&ip2)); // ARP resolved both ways
    let before = tx(&net, &p2);
    let m0 = scrape(&net);
    // exactly 100 UDP datagrams of 1000 bytes: 100 frames of 14 + 20 + 8 + 1000 bytes
    net.guests[0].ns.run_ok(
        "python3",
        &[
            "-c",
            &format!(
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 for i in range(100):\n    s.sendto(b'x'*1000,('{ip2}',9))\n"
            ),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = tx(&net, &p2);
    assert_eq!(after.0 - before.0, 100, "frames to guest 2");
    assert_eq!(after.1 - before.1, 100 * 1042, "bytes to guest 2");
    // the endpoint moves with the traffic, and agrees with port-list
    let m1 = scrape(&net);
    let rx1 = sample(&m1, "vnet_port_rx_frames_total", &p1);
    assert!(
        rx1 >= sample(&m0, "vnet_port_rx_frames_total", &p1) + 100,
        "{m1:#?}"
    );
    assert_eq!(sample(&m1, "vnet_port_tx_bytes_total", &p2), after.1);
    assert!(
        m1.iter().any(|l| l.starts_with("vnet_fdb_entries ")),
        "{m1:#?}"
    );
    // anything but GET is refused
    let code = net.host.run_ok(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "http://127.0.0.1:9464/metrics",
        ],
    );
    assert_eq!(code, "405");
}

#[test]
fn stats_shows_ports_fdb_and_dhcp_by_message_type() {
    let net = Net::start();
    let g = net.add_bare_guest("vms1", "52:54:00:91:00:01");
    let lease = common::clients::udhcpc(&net, &g, "s", &[]);
    assert!(lease.contains_key("ip"), "{}", net.log());
    let s = net.ctl_json(&["stats", &net.name]);
    let dhcp = &s["dhcp"];
    assert!(dhcp["received_discover"].as_u64() >= Some(1), "{s}");
    assert!(dhcp["sent_offer"].as_u64() >= Some(1), "{s}");
    assert!(dhcp["received_request"].as_u64() >= Some(1), "{s}");
    assert!(dhcp["sent_ack"].as_u64() >= Some(1), "{s}");
    assert!(s["network"]["fdb_entries"].as_u64() >= Some(2), "{s}");
    assert_eq!(s["network"]["fdb_evictions"], 0);
    // the port rows are port-list's
    let port = format!("{}:eth0", g.name());
    let ports = s["ports"].as_array().cloned().unwrap_or_default();
    let row = ports
        .iter()
        .find(|p| p["name"] == port.as_str())
        .expect("the guest's port");
    assert!(row["counters"]["rx_frames"].as_u64() >= Some(2), "{row}");
    // one port; a missing one is an error
    let one = net.ctl_json(&["stats", &net.name, &port]);
    assert_eq!(one["ports"].as_array().map(Vec::len), Some(1));
    let err = net.ctl_err(&["stats", &net.name, "nosuch"]);
    assert!(err.contains("no port named"), "{err}");
    // the human form
    let out = net.switchctl(&["stats", &net.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FDB") && text.contains("DHCP:") && text.contains("sent_ack"),
        "{text}"
    );
}

#[test]
fn log_levels_and_uptime_stamps() {
    // default: info lines, each stamped with the uptime
    let mut net = Net::start();
    net.add_guest();
    let log = net.log();
    let added = log
        .lines()
        .find(|l| l.contains("switchd: port") && l.contains("added"))
        .unwrap_or_else(|| panic!("no port line: {log}"));
    assert!(added.starts_with('['), "{added}");
    net.stop(false);
    // --log-level warn: no info lines
    let mut quiet = Net::start_with_args(None, &["--log-level", "warn"]);
    quiet.add_guest();
    assert!(!quiet.log().contains("added"), "{}", quiet.log());
    quiet.stop(false);
}
