//! Embeds the switch with three in-memory ports: each port is a queue of frames.
//!
//! Run with `cargo run -p vnet-switch --example in_memory`.

use std::collections::VecDeque;
use std::time::Duration;

use vnet_switch::{Config, Instant, MacAddr, PortConfig, PortId, Switch, Verdict};

/// A port whose "wire" is a queue of frames delivered to it.
struct MemPort {
    name: &'static str,
    id: PortId,
    delivered: VecDeque<Vec<u8>>,
}

fn frame(dst: MacAddr, src: MacAddr, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    f.extend_from_slice(payload);
    f
}

fn deliver(sw: &mut Switch, ports: &mut [MemPort], now: Instant, ingress: PortId, f: &[u8]) {
    let verdict = sw.handle_frame(now, ingress, f);
    let targets: Vec<PortId> = match verdict {
        Verdict::Forward(p) => vec![p],
        Verdict::Flood => sw.flood_targets(ingress).collect(),
        Verdict::Drop(reason) => {
            println!("  dropped: {}", reason.as_str());
            vec![]
        }
    };
    for p in ports.iter_mut().filter(|p| targets.contains(&p.id)) {
        p.delivered.push_back(f.to_vec());
    }
    let names: Vec<_> = ports
        .iter()
        .filter(|p| targets.contains(&p.id))
        .map(|p| p.name)
        .collect();
    println!("  {verdict:?} -> {names:?}");
}

fn main() {
    let mut sw = Switch::new(Config::default().with_aging_time(Duration::from_secs(10)));
    let mut ports: Vec<MemPort> = ["a", "b", "c"]
        .into_iter()
        .map(|name| MemPort {
            name,
            id: sw.add_port(PortConfig::default()).expect("three ports fit"),
            delivered: VecDeque::new(),
        })
        .collect();
    let (a, b) = (ports[0].id, ports[1].id);
    let mac_a: MacAddr = "02:00:00:00:00:0a".parse().expect("valid MAC");
    let mac_b: MacAddr = "02:00:00:00:00:0b".parse().expect("valid MAC");

    let mut now = Instant::from_secs(0);
    println!("a -> b (b unknown: flooded to b and c)");
    deliver(&mut sw, &mut ports, now, a, &frame(mac_b, mac_a, b"hello"));
    println!("b -> a (a learned: unicast)");
    deliver(&mut sw, &mut ports, now, b, &frame(mac_a, mac_b, b"hi"));
    println!("a -> b (b learned: unicast)");
    deliver(&mut sw, &mut ports, now, a, &frame(mac_b, mac_a, b"again"));

    now = now + Duration::from_secs(11);
    sw.handle_timeout(now);
    println!("after 11 s, b aged out: a -> b is flooded again");
    deliver(
        &mut sw,
        &mut ports,
        now,
        a,
        &frame(mac_b, mac_a, b"still there?"),
    );

    for p in &ports {
        let c = sw.port_counters(p.id).expect("port exists");
        println!(
            "port {}: delivered {} frames, rx {} tx {}",
            p.name,
            p.delivered.len(),
            c.rx_frames,
            c.tx_frames
        );
    }
}
